/* event-fanout: copy each event line on stdin to every subscriber, in order. */
#include <sys/types.h>
#include <sys/wait.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ndj.h"
#include "util.h"

#define FILE_PREFIX	"file:"

struct sub {
	int		 n;		/* from 1, in messages */
	const char	*spec;		/* the operand as given */
	int		 is_file;
	int		 fd;		/* its input; -1 once closed */
	pid_t		 pid;		/* a running command, or 0 */
	int		 wstatus;	/* once reaped */
	int		 failed;	/* ended or failed too early */
	int		 lost;		/* could not be waited for */
	struct ndj_writer w;
};

static struct sub *subs;
static int nsubs;			/* started so far */
static int stopping;			/* a signal was passed on */
static sigset_t wake_set;		/* SIGCHLD, SIGINT, SIGTERM */
static volatile sig_atomic_t child_ended;

static void
usage(void)
{
	fprintf(stderr, "usage: event-fanout [-hV] subscriber ...\n");
	exit(EX_USAGE);
}

static void
on_child(int sig)
{
	(void)sig;
	child_ended = 1;
}

/*
 * SIGCHLD wakes the poll so that a subscriber that exits while the stream
 * is idle is noticed at once, even if a grandchild still holds its pipe.
 */
static void
init_signals(void)
{
	struct sigaction sa;

	util_signals();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_child;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&wake_set);
	sigaddset(&wake_set, SIGCHLD);
	sigaddset(&wake_set, SIGINT);
	sigaddset(&wake_set, SIGTERM);
}

/* 0, or EX_IOERR after reporting. */
static int
start_file(struct sub *s)
{
	const char *path = s->spec + strlen(FILE_PREFIX);

	s->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
	if (s->fd < 0) {
		warn("subscriber %d (%s)", s->n, s->spec);
		return EX_IOERR;
	}
	return 0;
}

/* 0, or EX_UNAVAILABLE after reporting. */
static int
start_command(struct sub *s)
{
	struct sigaction sa;
	int p[2];

	/* Close-on-exec: no other subscriber may hold this pipe open. */
	if (pipe2(p, O_CLOEXEC) < 0) {
		warn("subscriber %d (%s): pipe", s->n, s->spec);
		return EX_UNAVAILABLE;
	}
	if ((s->pid = fork()) < 0) {
		warn("subscriber %d (%s): fork", s->n, s->spec);
		s->pid = 0;
		close(p[0]);
		close(p[1]);
		return EX_UNAVAILABLE;
	}
	if (s->pid == 0) {
		/* An ignored signal stays ignored across exec: undo that. */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGPIPE, &sa, NULL);
		if (p[0] == STDIN_FILENO)
			fcntl(p[0], F_SETFD, 0);
		else if (dup2(p[0], STDIN_FILENO) < 0) {
			warn("subscriber %d (%s): dup2", s->n, s->spec);
			_exit(127);
		}
		execl("/bin/sh", "sh", "-c", s->spec, (char *)NULL);
		warn("subscriber %d (%s): /bin/sh", s->n, s->spec);
		_exit(127);
	}
	close(p[0]);
	s->fd = p[1];
	return 0;
}

/* Pass a pending SIGINT or SIGTERM on to every running command. */
static void
forward_stop(void)
{
	sigset_t old;
	int i, sig;

	sigprocmask(SIG_BLOCK, &wake_set, &old);
	if ((sig = util_stop) != 0) {
		util_stop = 0;
		stopping = 1;
		for (i = 0; i < nsubs; i++)
			if (subs[i].pid > 0)
				kill(subs[i].pid, sig);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/*
 * Reap the commands that have ended, without blocking.  One whose input
 * is still open ended too early.  Returns how many are still running.
 */
static int
reap(void)
{
	struct sub *s;
	pid_t pid;
	int i, running = 0;

	child_ended = 0;
	for (i = 0; i < nsubs; i++) {
		s = &subs[i];
		if (s->pid <= 0)
			continue;
		pid = waitpid(s->pid, &s->wstatus, WNOHANG);
		if (pid == 0) {
			running++;
			continue;
		}
		if (pid < 0) {
			warn("subscriber %d (%s): waitpid", s->n, s->spec);
			s->lost = 1;
		}
		s->pid = 0;
		if (s->fd >= 0 && !stopping)
			s->failed = 1;
	}
	return running;
}

/* Mark s failed after a write error; a command's end is reported later. */
static void
write_failed(struct sub *s, int error)
{
	s->failed = 1;
	if (s->is_file)
		warnx("subscriber %d (%s): %s", s->n, s->spec, strerror(error));
	else if (error != EPIPE)
		warnx("subscriber %d (%s): write: %s", s->n, s->spec,
		    strerror(error));
}

/* Flush every subscriber; -1 if one failed. */
static int
flush_all(void)
{
	int i;

	for (i = 0; i < nsubs; i++)
		if (subs[i].fd >= 0 && ndj_flush(&subs[i].w) < 0) {
			write_failed(&subs[i], subs[i].w.err);
			return -1;
		}
	return 0;
}

/*
 * Sleep until stdin is readable, a subscriber's pipe has lost its reader,
 * a child ended or a signal came.  Returns 1 if a subscriber failed, 0
 * otherwise, -1 if poll failed (reported).
 */
static int
wait_input(struct pollfd *pfd)
{
	sigset_t old;
	int i, n, rc = 0;

	sigprocmask(SIG_BLOCK, &wake_set, &old);
	if (util_stop || child_ended)
		goto out;
	pfd[0].fd = STDIN_FILENO;
	pfd[0].events = POLLIN;
	for (i = 0; i < nsubs; i++) {
		/* A negative fd is skipped; a write end needs no events. */
		pfd[i + 1].fd = subs[i].is_file ? -1 : subs[i].fd;
		pfd[i + 1].events = 0;
		pfd[i + 1].revents = 0;
	}
	n = ppoll(pfd, (nfds_t)nsubs + 1, NULL, &old);
	if (n < 0 && errno != EINTR) {
		warn("poll");
		rc = -1;
	}
	for (i = 0; n > 0 && i < nsubs; i++)
		if (pfd[i + 1].revents != 0) {
			subs[i].failed = 1;
			rc = 1;
		}
out:
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/*
 * Close every subscriber's input (after flushing it if flush is set),
 * then wait for every command, passing signals on meanwhile.
 */
static void
finish(int flush)
{
	struct sub *s;
	sigset_t old;
	int i;

	for (i = 0; i < nsubs; i++) {
		s = &subs[i];
		if (s->fd < 0)
			continue;
		if (flush && !s->failed && ndj_flush(&s->w) < 0)
			write_failed(s, s->w.err);
		if (close(s->fd) < 0 && s->is_file && !s->failed)
			write_failed(s, errno);
		s->fd = -1;
	}
	sigprocmask(SIG_BLOCK, &wake_set, &old);
	for (;;) {
		forward_stop();
		if (reap() == 0)
			break;
		sigsuspend(&old);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Report how a subscriber ended if it did not end well; 1 if so. */
static int
report(const struct sub *s)
{
	if (s->is_file || s->lost)
		return s->failed || s->lost;	/* reported already */
	if (WIFEXITED(s->wstatus)) {
		if (WEXITSTATUS(s->wstatus) == 0 && !s->failed)
			return 0;
		warnx("subscriber %d (%s): exited with status %d", s->n,
		    s->spec, WEXITSTATUS(s->wstatus));
	} else if (WIFSIGNALED(s->wstatus))
		warnx("subscriber %d (%s): killed by signal %d", s->n,
		    s->spec, WTERMSIG(s->wstatus));
	else
		warnx("subscriber %d (%s): wait status %#x", s->n, s->spec,
		    (unsigned int)s->wstatus);
	return 1;
}

/* Copy stdin to the subscribers until end of input; the exit status. */
static int
run(void)
{
	struct ndj_reader in;
	struct pollfd *pfd;
	char *line;
	size_t len;
	int i, r, status = 0;

	pfd = xmalloc(((size_t)nsubs + 1) * sizeof(*pfd));
	ndj_reader_init(&in, STDIN_FILENO, "stdin");
	for (;;) {
		forward_stop();
		if (stopping)
			break;
		if (child_ended) {
			reap();
			for (i = 0; i < nsubs; i++)
				if (subs[i].failed)
					status = EX_TEMPFAIL;
			if (status != 0)
				break;
		}
		if (!ndj_more(&in)) {
			/* Nothing waiting: send what is buffered now. */
			if (flush_all() < 0) {
				status = EX_TEMPFAIL;
				break;
			}
			if (!in.eof) {
				if ((r = wait_input(pfd)) != 0) {
					status = r > 0 ? EX_TEMPFAIL :
					    EX_SOFTWARE;
					break;
				}
				continue;
			}
		}
		r = ndj_getline(&in, &line, &len);
		if (r == 0)
			break;
		/*
		 * The reader lets a long line through when its newline is
		 * already buffered: enforce the limit here as well.
		 */
		if (r == 1 && len > NDJ_LINE_MAX) {
			warnx("%s:%lu: line longer than %d bytes", in.name,
			    in.lineno, NDJ_LINE_MAX);
			r = -1;
		}
		if (r == -1) {
			status = EX_DATAERR;
			break;
		}
		if (r == -2) {
			if (util_stop)
				continue;
			status = EX_IOERR;
			break;
		}
		for (i = 0; i < nsubs; i++)
			if (ndj_write(&subs[i].w, line, len) < 0) {
				write_failed(&subs[i], subs[i].w.err);
				status = EX_TEMPFAIL;
				break;
			}
		if (status != 0)
			break;
	}
	/* After a signal or a failed subscriber, drop what is buffered. */
	finish(!stopping && status != EX_TEMPFAIL);
	ndj_reader_free(&in);
	free(pfd);
	return status;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct sub *s;
	int bad = 0, ch, i, status = 0;

	init_signals();
	/* "+": the first operand ends the options, as for env(1). */
	while ((ch = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'V':
			util_version();
			return 0;
		case 'h':
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();

	subs = xmalloc((size_t)argc * sizeof(*subs));
	for (i = 0; i < argc; i++) {
		s = &subs[i];
		memset(s, 0, sizeof(*s));
		s->n = i + 1;
		s->spec = argv[i];
		s->is_file = strncmp(s->spec, FILE_PREFIX,
		    strlen(FILE_PREFIX)) == 0;
		s->fd = -1;
		status = s->is_file ? start_file(s) : start_command(s);
		if (status != 0)
			break;
		ndj_writer_init(&s->w, s->fd);
		nsubs++;
	}
	if (status == 0)
		status = run();
	else
		finish(0);

	for (i = 0; i < nsubs; i++) {
		bad |= report(&subs[i]);
		ndj_writer_free(&subs[i].w);
	}
	free(subs);
	if (bad && status == 0)
		status = EX_TEMPFAIL;
	return status;
}
