/* util: version, help, allocation that cannot fail, signals, shared by every command. */
#ifndef CQRS_UTIL_H
#define CQRS_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sysexits.h>

#define CQRS_VERSION "0.2.0"

/* The SIGINT or SIGTERM that asked the command to stop, or 0. */
extern volatile sig_atomic_t util_stop;
/* Set by SIGUSR1: print a line of progress, then clear it. */
extern volatile sig_atomic_t util_progress;

void	 util_signals(void);
int	 util_exit(int);
void	 util_usage(const char *) __attribute__((noreturn));
void	 util_help(const char *, const char *) __attribute__((noreturn));
void	 util_version(void);
int64_t	 util_mono_ms(void);
int64_t	 util_real_ms(void);
void	*xmalloc(size_t);
int	 util_pg_name(const char *);
double	 util_seconds(const char *, const char *, double, double);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);

#endif
