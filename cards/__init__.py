"""Card content as data a clinician can review and edit (TOML files beside this one)."""
