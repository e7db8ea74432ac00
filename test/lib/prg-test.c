/* prg-test: count the lines and bytes of stdin with a progress line on SIGUSR1 or --stats, to test common/prg (not installed). */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prg.h"
#include "util.h"

static const char synopsis[] =
    "usage: prg-test [-h] [--selftest] [--stats seconds]\n";

static const char options[] =
    "  -h, --help                print this help and exit\n"
    "      --selftest            check prg's argument checks, then exit\n"
    "      --stats SECONDS       a progress line every SECONDS\n";

struct counts {
	uint64_t	 lines;
	unsigned long	 bytes;
	int64_t		 partial;	/* bytes of an unfinished last line */
};

static int64_t
partial(void *arg)
{
	return ((struct counts *)arg)->partial;
}

#define CHECK(c) do {							\
	if (!(c)) {							\
		warnx("selftest: line %d: %s", __LINE__, #c);		\
		fails++;						\
	}								\
} while (0)

/* The contracts that the bats suite cannot reach through a command line. */
static int
selftest(void)
{
	static const char *const bad[] = { "", "Applied", "1st", "_x", "a-b",
	    "a b", "time", "prog", "pid", "elapsed_s", "rows_per_s",
	    "abcdefghijklmnopqrstuvwxyz012345" };
	static uint64_t v[PRG_MAX + 1];
	struct prg p;
	char name[16], buf[4096];
	size_t i, len;
	int64_t ms;
	int fails = 0;

	prg_init(&p, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(prg_counter(&p, bad[i], &v[0]) == -1);
	CHECK(prg_counter(&p, "abcdefghijklmnopqrstuvwxyz01234", &v[0]) == 0);
	CHECK(prg_counter(&p, "abcdefghijklmnopqrstuvwxyz01234", &v[0]) == -1);
	CHECK(prg_gauge(&p, "g", NULL, NULL) == -1);
	for (i = 1; i < PRG_MAX; i++) {
		snprintf(name, sizeof(name), "c%zu", i);
		CHECK(prg_counter(&p, name, &v[i]) == 0);
	}
	CHECK(prg_counter(&p, "one_more", &v[PRG_MAX]) == -1);
	/* The longest line fits: every figure at its widest. */
	for (i = 0; i < PRG_MAX; i++)
		v[i] = UINT64_MAX;
	len = prg_line(&p, buf, sizeof(buf));
	CHECK(len > 0 && buf[len - 1] == '\n' && strlen(buf) == len);
	CHECK(prg_line(&p, buf, 40) == 0);

	CHECK(prg_every("0.1", &ms) == 0 && ms == 100);
	CHECK(prg_every("2", &ms) == 0 && ms == 2000);
	CHECK(prg_every("1.5", &ms) == 0 && ms == 1500);
	CHECK(prg_every("86400", &ms) == 0 && ms == 86400000);
	CHECK(prg_every("0.09", &ms) == -1);
	CHECK(prg_every("86401", &ms) == -1);
	CHECK(prg_every("0", &ms) == -1);
	CHECK(prg_every("-1", &ms) == -1);
	CHECK(prg_every("", &ms) == -1);
	CHECK(prg_every(" 1", &ms) == -1);
	CHECK(prg_every("1s", &ms) == -1);
	CHECK(prg_every("nan", &ms) == -1);
	CHECK(prg_every("inf", &ms) == -1);
	CHECK(prg_every("1e9", &ms) == -1);

	prg_init(&p, 0);
	CHECK(prg_timeout(&p, -1) == -1 && prg_timeout(&p, 7) == 7);
	prg_init(&p, 60000);
	CHECK(prg_timeout(&p, 5) == 5);
	CHECK(prg_timeout(&p, -1) > 59000 && prg_timeout(&p, -1) <= 60000);
	return fails == 0 ? 0 : 1;
}

int
main(int argc, char *argv[])
{
	enum { OPT_SELFTEST = 256, OPT_STATS };
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "selftest", no_argument, NULL, OPT_SELFTEST },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ NULL, 0, NULL, 0 }
	};
	struct counts c = { 0, 0, 0 };
	struct pollfd pfd;
	struct prg p;
	int64_t every = 0;
	char buf[65536];
	ssize_t n, i;
	int ch, rc;

	util_signals();
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_SELFTEST:
			return selftest();
		case OPT_STATS:
			if (prg_every(optarg, &every) < 0)
				errx(EX_USAGE, "--stats %s: want seconds from "
				    "0.1 to 86400", optarg);
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc)
		util_usage(synopsis);

	prg_init(&p, every);
	if (prg_counter(&p, "lines", &c.lines) < 0 ||
	    prg_counter_ul(&p, "bytes", &c.bytes) < 0 ||
	    prg_gauge(&p, "partial_bytes", partial, &c) < 0)
		errx(EX_SOFTWARE, "prg: cannot register the figures");
	for (;;) {
		prg_tick(&p);
		if (util_stop)
			break;
		pfd.fd = STDIN_FILENO;
		pfd.events = POLLIN;
		rc = poll(&pfd, 1, prg_timeout(&p, -1));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			err(EX_OSERR, "poll");
		if (rc == 0)
			continue;
		if ((n = read(STDIN_FILENO, buf, sizeof(buf))) < 0) {
			if (errno == EINTR)
				continue;
			err(EX_IOERR, "stdin");
		}
		if (n == 0)
			break;
		c.bytes += (unsigned long)n;
		for (i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				c.lines++;
				c.partial = 0;
			} else
				c.partial++;
		}
	}
	if (printf("%" PRIu64 " lines, %lu bytes\n", c.lines, c.bytes) < 0 ||
	    fflush(stdout) != 0)
		err(EX_IOERR, "stdout");
	return util_exit(0);
}
