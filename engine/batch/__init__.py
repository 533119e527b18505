"""`python -m engine batch`: many job folders, run here in turn or one Ray task each (see driver.py)."""
