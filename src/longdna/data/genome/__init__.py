"""Reference genomes: acquired, normalised to indexed bgzip FASTA and read by range or interval."""
