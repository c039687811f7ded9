"""The read side: SQL views, reports, comparisons, judge reliability and Datasette browsing."""
