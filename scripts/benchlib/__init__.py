"""benchlib: the modules behind scripts/bench (the command and its options
stay in scripts/bench; see its opening comment for what a run measures).

  common    the run's failure and interrupt exceptions, say(), the table of
            every process the bench starts, free ports, bounded waits,
            figures from /proc
  targets   what a target is (an NBD export fio runs against, the processes
            behind it, how it settles after a job); the nbdkit references;
            outside references (--ref: fio options, processes to watch)
  cluster   the blockd target: a local cluster of blob servers, proxies and
            one agent, settled until the agent's cache is clean; its
            process, index and idle-volume figures
  jobs      the fio job table, the pre-fill pass, running fio and reading
            its JSON, the run loop over jobs and targets
  floor     the disk's flush floor, measured in the run (one, three in
            parallel, two rounds of three, six in series)
  syscount  system calls per durable 4k write, per blockd process (perf stat)
  report    tables, ratios and goals; results.md and results.json

Standard library only (plus python3-libnbd, imported by targets).
"""
