"""The design of a study: catalogs, rubric scales, the spec DSL, deterministic ids and the planner."""
