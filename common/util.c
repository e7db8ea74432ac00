/* util: version, help, allocation that cannot fail, signals, shared by every command. */
#include <err.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

volatile sig_atomic_t util_stop;
volatile sig_atomic_t util_progress;

static void
on_stop(int sig)
{
	util_stop = sig;
}

static void
on_progress(int sig)
{
	(void)sig;
	util_progress = 1;
}

/*
 * Ignore SIGPIPE (write errors are checked instead), let SIGINT and
 * SIGTERM set util_stop and SIGUSR1 util_progress.  No SA_RESTART for the
 * first two: a blocking read or write returns EINTR so that the loop sees
 * the flag.  SIGUSR1 restarts, so that it never disturbs the work.
 */
void
util_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_progress;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
}

/*
 * The end of main(): after a SIGINT, die by it, so that the shell and a
 * "set -e" script see the interrupt (status 130); otherwise return status.
 */
int
util_exit(int status)
{
	struct sigaction sa;

	if (util_stop != SIGINT)
		return status;
	fflush(NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	raise(SIGINT);
	return status;		/* SIGINT was blocked or ignored by our parent */
}

/* A usage error: the synopsis on standard error, exit 64. */
void
util_usage(const char *synopsis)
{
	fputs(synopsis, stderr);
	exit(EX_USAGE);
}

/* -h: the synopsis and one line per option on standard output, exit 0. */
void
util_help(const char *synopsis, const char *options)
{
	if (printf("%s\n%s", synopsis, options) < 0 || fflush(stdout) != 0)
		err(EX_IOERR, "stdout");
	exit(0);
}

void
util_version(void)
{
	extern char *program_invocation_short_name;

	printf("%s (cqrs-pipes) %s\n", program_invocation_short_name,
	    CQRS_VERSION);
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *
xmalloc(size_t n)
{
	void *p;

	if ((p = malloc(n ? n : 1)) == NULL)
		err(EX_OSERR, "malloc");
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n ? n : 1, size ? size : 1)) == NULL)
		err(EX_OSERR, "calloc");
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n ? n : 1)) == NULL)
		err(EX_OSERR, "realloc");
	return p;
}

char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		err(EX_OSERR, "strdup");
	return p;
}

/*
 * A slot or publication name as the commands take it: 1 to 63 (NAMEDATALEN
 * - 1) of a-z, 0-9 and _.
 */
int
util_pg_name(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");

	return n > 0 && n <= 63 && s[n] == '\0';
}

/*
 * The seconds of option OPT: a decimal number from MIN to MAX, or a usage
 * error (64).
 */
double
util_seconds(const char *opt, const char *arg, double min, double max)
{
	char *end;
	double v = strtod(arg, &end);

	if (*end != '\0' || end == arg || !(v >= min && v <= max))
		errx(EX_USAGE, "%s %s: want seconds from %g to %g", opt, arg, min,
		    max);
	return v;
}
