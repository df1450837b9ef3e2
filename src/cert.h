/* cert.h: `blockd cert ...`, the cluster CA on the command line (cert.c). */
#ifndef BD_CERT_H
#define BD_CERT_H

/* Run `blockd cert ARGV[1..]`; ARGV[0] is "cert".  Returns the exit status:
 * 0 done, 1 failure, 2 usage. */
int cert_main(int argc, char **argv);

#endif
