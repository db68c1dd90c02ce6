"""The numerical-stability audit: grids of extreme inputs, ULP measurement
against the mpmath oracle, peers, and reports."""
