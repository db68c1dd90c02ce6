"""Per-family scalar formulas: value and derivative of one element (or row, or box pair)."""
