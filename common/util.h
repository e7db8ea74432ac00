/* util: version, allocation that cannot fail, signals, shared by every command. */
#ifndef CQRS_UTIL_H
#define CQRS_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <sysexits.h>

#define CQRS_VERSION "0.1.0"

/* Set by the SIGINT/SIGTERM handler that util_signals() installs. */
extern volatile sig_atomic_t util_stop;

void	 util_signals(void);
void	 util_version(void);
void	*xmalloc(size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);

#endif
