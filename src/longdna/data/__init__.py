"""Data of the workflow's first stages, by topic.

:mod:`longdna.data.genome`
    reference genomes: acquiring and normalising FASTA, the demo genome, intervals of a genome;
:mod:`longdna.data.tokens`
    a genome as token shards and the training datasets of windows over them;
:mod:`longdna.data.benchmarks`
    the benchmark format, the suites materialised into it and the validation split carved from train.

:mod:`longdna.data.download` fetches the files of genomes and benchmarks alike. Only
:mod:`longdna.data.tokens.windows` imports torch: the genome, tokenize and benchmark jobs run without it.
"""
