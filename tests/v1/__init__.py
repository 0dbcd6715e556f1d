"""v1 code runs unchanged: the patterns of the reference pages and of v1 notebooks."""
