"""Package data: the numbers transcribed from the MMHPN paper (paper_tables.csv)."""
