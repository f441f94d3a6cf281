"""The operator CLI (`multipy ...`); click is imported only here."""
