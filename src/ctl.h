/* ctl.h: `blockd ctl ...`, the command-line client of the admin API. */
#ifndef BD_CTL_H
#define BD_CTL_H

/* ARGV[0] is "ctl".  Returns the process exit status: 0 ok, 1 server or
 * connection error, 2 usage error. */
int ctl_main(int argc, char **argv);

#endif
