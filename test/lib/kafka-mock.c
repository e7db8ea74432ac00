/* kafka-mock: a Kafka cluster of librdkafka's mock brokers on loopback, for the tests and the benchmark (not installed). */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "util.h"

static const char synopsis[] =
    "usage: kafka-mock [-h] [-b brokers] [-p partitions] [-r replicas] "
    "[topic ...]\n";

static const char options[] =
    "  -b N                      brokers (1-9, 3)\n"
    "  -h, --help                print this help and exit\n"
    "  -p N                      partitions of each topic (1-64, 4)\n"
    "  -r N                      replicas of each partition (1-brokers, 1)\n"
    "  topic:                    a topic to create; others are created when\n"
    "                            a client first asks for them\n"
    "  It prints the bootstrap servers on one line, then runs until SIGTERM\n"
    "  or SIGINT.  SIGUSR1 takes every broker down (connections closed and\n"
    "  refused), SIGUSR2 brings them up again; the data stays.\n";

static volatile sig_atomic_t got_down, got_up;

static void
on_down(int sig)
{
	(void)sig;
	got_down = 1;
}

static void
on_up(int sig)
{
	(void)sig;
	got_up = 1;
}

static long
num(const char *s, long lo, long hi, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end != '\0' || end == s || v < lo || v > hi)
		errx(EX_USAGE, "%s: want %ld to %ld", what, lo, hi);
	return v;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sigaction sa;
	rd_kafka_conf_t *conf;
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_resp_err_t e;
	rd_kafka_t *rk;
	char errstr[512];
	long brokers = 3, parts = 4, replicas = 1;
	int ch, i;

	util_signals();
	while ((ch = getopt_long(argc, argv, "b:hp:r:", longopts, NULL)) != -1)
		switch (ch) {
		case 'b':
			brokers = num(optarg, 1, 9, "-b");
			break;
		case 'p':
			parts = num(optarg, 1, 64, "-p");
			break;
		case 'r':
			replicas = num(optarg, 1, 9, "-r");
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	if (replicas > brokers)
		errx(EX_USAGE, "-r: at most as many as brokers (%ld)", brokers);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_down;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_up;
	sigaction(SIGUSR2, &sa, NULL);

	/* The handle only hosts the cluster: it connects nowhere. */
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr,
	    sizeof(errstr)) != RD_KAFKA_CONF_OK)
		errx(EX_SOFTWARE, "%s", errstr);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
	    sizeof(errstr))) == NULL)
		errx(EX_SOFTWARE, "%s", errstr);
	if ((mc = rd_kafka_mock_cluster_new(rk, (int)brokers)) == NULL)
		errx(EX_SOFTWARE, "cannot start the mock cluster");
	for (i = optind; i < argc; i++)
		if ((e = rd_kafka_mock_topic_create(mc, argv[i], (int)parts,
		    (int)replicas)) != RD_KAFKA_RESP_ERR_NO_ERROR)
			errx(EX_SOFTWARE, "%s: %s", argv[i], rd_kafka_err2str(e));
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	if (fflush(stdout) == EOF)
		err(EX_IOERR, "stdout");

	while (!util_stop) {
		if (got_down) {
			got_down = 0;
			rd_kafka_mock_broker_set_down(mc, -1);
			fprintf(stderr, "kafka-mock: brokers down\n");
		}
		if (got_up) {
			got_up = 0;
			rd_kafka_mock_broker_set_up(mc, -1);
			fprintf(stderr, "kafka-mock: brokers up\n");
		}
		/* Signals interrupt the sleep. */
		usleep(200000);
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return util_exit(0);
}
