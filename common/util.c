/* util: version, allocation that cannot fail, signals, shared by every command. */
#include <err.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

volatile sig_atomic_t util_stop;

static void
on_stop(int sig)
{
	util_stop = sig;
}

/*
 * Ignore SIGPIPE (write errors are checked instead) and let SIGINT and
 * SIGTERM set util_stop.  No SA_RESTART: a blocking read returns EINTR so
 * that the loop sees the flag.
 */
void
util_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

void
util_version(void)
{
	extern char *program_invocation_short_name;

	printf("%s (cqrs-pipes) %s\n", program_invocation_short_name,
	    CQRS_VERSION);
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
