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
#include "prg.h"
#include "util.h"

#define FILE_PREFIX	"file:"
#define CHUNK		(256 * 1024)	/* read at most this much at once */

struct sub {
	int		 n;		/* from 1, in messages */
	const char	*spec;		/* the operand as given */
	char		*shown;		/* the operand, secrets masked */
	int		 is_file;
	int		 fd;		/* its input; -1 once closed */
	pid_t		 pid;		/* a running command (its group), or 0 */
	int		 wstatus;	/* once reaped */
	int		 failed;	/* ended or failed too early */
	int		 lost;		/* could not be waited for */
};

struct fanout {
	struct sub	*subs;
	int		 nsubs;		/* started so far */
	int		 stop_sig;	/* the signal passed on, or 0 */
	uint64_t	 bytes;
	uint64_t	 lines;
	int		 last_nl;	/* the last byte copied was a newline */
	struct prg	 prg;
};

static sigset_t wake_set;		/* SIGCHLD, SIGINT, SIGTERM, SIGUSR1 */
static volatile sig_atomic_t child_ended;

static const char synopsis[] =
    "usage: event-fanout [-hV] [--stats seconds] subscriber ...\n";

static const char options[] =
    "  -h, --help             print this help and exit\n"
    "      --stats SECONDS    print a line of progress this often\n"
    "  -V, --version          print the version and exit\n"
    "  subscriber             a shell command (its stdin), or file:PATH\n";

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
	/*
	 * No SA_RESTART: a write blocked on one subscriber must notice that
	 * another has ended (a cleaner may wait for a projector that died).
	 */
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&wake_set);
	sigaddset(&wake_set, SIGCHLD);
	sigaddset(&wake_set, SIGINT);
	sigaddset(&wake_set, SIGTERM);
	sigaddset(&wake_set, SIGUSR1);
}

/*
 * The operand for messages, with secrets masked: the password of
 * "scheme://user:password@" and the value of "password=" become "***".
 */
static char *
mask(const char *s)
{
	struct sbuf sb;
	const char *p, *at, *colon, *end;
	char *r;

	sb_init(&sb);
	for (p = s; *p != '\0'; ) {
		if (strncmp(p, "://", 3) == 0) {
			sb_put(&sb, p, 3);
			p += 3;
			end = p + strcspn(p, "/ \t'\"?#");
			/* The last @ of the authority: a password may hold @. */
			for (at = NULL, colon = p; colon < end; colon++)
				if (*colon == '@')
					at = colon;
			colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
			if (colon != NULL) {
				sb_put(&sb, p, (size_t)(colon - p) + 1);
				sb_puts(&sb, "***");
				p = at;
			}
			continue;
		}
		if (strncasecmp(p, "password=", 9) == 0) {
			sb_put(&sb, p, 9);
			p += 9;
			if (*p == '\'' || *p == '"') {
				end = strchr(p + 1, *p);
				p = end ? end + 1 : p + strlen(p);
			} else
				p += strcspn(p, " \t'\"");
			sb_puts(&sb, "***");
			continue;
		}
		sb_putc(&sb, *p++);
	}
	r = xstrdup(sb.buf);
	sb_free(&sb);
	return r;
}

/* 0, or EX_IOERR after reporting. */
static int
start_file(struct sub *s)
{
	const char *path = s->spec + strlen(FILE_PREFIX);

	s->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
	if (s->fd < 0) {
		warn("subscriber %d (%s)", s->n, s->shown);
		return EX_IOERR;
	}
	return 0;
}

/*
 * A subscriber command: sh -c spec, its standard input our pipe, in a
 * process group of its own, so that a signal reaches the command itself
 * and whatever it starts, not only the shell.  0, or EX_UNAVAILABLE after
 * reporting.
 */
static int
start_command(struct sub *s)
{
	struct sigaction sa;
	int p[2];

	/* Close-on-exec: no other subscriber may hold this pipe open. */
	if (pipe2(p, O_CLOEXEC) < 0) {
		warn("subscriber %d (%s): pipe", s->n, s->shown);
		return EX_UNAVAILABLE;
	}
	if ((s->pid = fork()) < 0) {
		warn("subscriber %d (%s): fork", s->n, s->shown);
		s->pid = 0;
		close(p[0]);
		close(p[1]);
		return EX_UNAVAILABLE;
	}
	if (s->pid == 0) {
		setpgid(0, 0);
		/* An ignored signal stays ignored across exec: undo that. */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGPIPE, &sa, NULL);
		sigprocmask(SIG_SETMASK, &sa.sa_mask, NULL);
		if (p[0] == STDIN_FILENO)
			fcntl(p[0], F_SETFD, 0);
		else if (dup2(p[0], STDIN_FILENO) < 0) {
			warn("subscriber %d (%s): dup2", s->n, s->shown);
			_exit(127);
		}
		execl("/bin/sh", "sh", "-c", s->spec, (char *)NULL);
		warn("subscriber %d (%s): /bin/sh", s->n, s->shown);
		_exit(127);
	}
	setpgid(s->pid, s->pid);	/* as the child does: whoever is first */
	close(p[0]);
	s->fd = p[1];
	return 0;
}

/* Pass a pending SIGINT or SIGTERM on to every running command's group. */
static void
forward_stop(struct fanout *f)
{
	sigset_t old;
	int i;

	if (util_stop == 0 || f->stop_sig != 0)
		return;		/* checked again, masked, before sleeping */
	sigprocmask(SIG_BLOCK, &wake_set, &old);
	if (util_stop != 0 && f->stop_sig == 0) {
		f->stop_sig = util_stop;
		for (i = 0; i < f->nsubs; i++)
			if (f->subs[i].pid > 0)
				kill(-f->subs[i].pid, f->stop_sig);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/*
 * Reap the commands that have ended, without blocking.  One whose input
 * is still open ended too early.  Returns how many are still running.
 */
static int
reap(struct fanout *f)
{
	struct sub *s;
	pid_t pid;
	int i, running = 0;

	child_ended = 0;
	for (i = 0; i < f->nsubs; i++) {
		s = &f->subs[i];
		if (s->pid <= 0)
			continue;
		pid = waitpid(s->pid, &s->wstatus, WNOHANG);
		if (pid == 0) {
			running++;
			continue;
		}
		if (pid < 0) {
			warn("subscriber %d (%s): waitpid", s->n, s->shown);
			s->lost = 1;
		}
		s->pid = 0;
		if (s->fd >= 0 && !f->stop_sig)
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
		warnx("subscriber %d (%s): %s", s->n, s->shown,
		    strerror(error));
	else if (error != EPIPE)
		warnx("subscriber %d (%s): write: %s", s->n, s->shown,
		    strerror(error));
}

static int reap(struct fanout *);

/*
 * Write all of buf to s.  0; -1 if it failed (marked) or, while it was
 * blocked, another subscriber ended; 1 when a stop signal interrupted it.
 */
static int
put(struct fanout *f, struct sub *s, const char *buf, size_t len)
{
	ssize_t n;
	int i;

	while (len > 0) {
		n = write(s->fd, buf, len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR) {
			if (util_stop)
				return 1;
			if (child_ended) {
				reap(f);
				for (i = 0; i < f->nsubs; i++)
					if (f->subs[i].failed)
						return -1;
			}
			continue;
		}
		write_failed(s, n < 0 ? errno : EIO);
		return -1;
	}
	return 0;
}

/*
 * Sleep until stdin is readable, a subscriber's pipe has lost its reader,
 * a child ended or a signal came.  Returns 2 if stdin is readable, 1 if a
 * subscriber failed, 0 otherwise, -1 if poll failed (reported).
 */
static int
wait_input(struct fanout *f, struct pollfd *pfd)
{
	struct timespec ts, *tp = NULL;
	sigset_t old;
	int i, n, ms, rc = 0;

	sigprocmask(SIG_BLOCK, &wake_set, &old);
	if (util_stop || child_ended || util_progress)
		goto out;
	pfd[0].fd = STDIN_FILENO;
	pfd[0].events = POLLIN;
	for (i = 0; i < f->nsubs; i++) {
		/* A negative fd is skipped; a write end needs no events. */
		pfd[i + 1].fd = f->subs[i].is_file ? -1 : f->subs[i].fd;
		pfd[i + 1].events = 0;
		pfd[i + 1].revents = 0;
	}
	if ((ms = prg_timeout(&f->prg, -1)) >= 0) {
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (long)(ms % 1000) * 1000000;
		tp = &ts;
	}
	n = ppoll(pfd, (nfds_t)f->nsubs + 1, tp, &old);
	if (n < 0 && errno != EINTR) {
		warn("poll");
		rc = -1;
	}
	for (i = 0; n > 0 && i < f->nsubs; i++)
		if (pfd[i + 1].revents != 0) {
			f->subs[i].failed = 1;
			rc = 1;
		}
	if (rc == 0 && n > 0 && pfd[0].revents != 0)
		rc = 2;
out:
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/*
 * Close every subscriber's input, then wait for every command, passing
 * signals on meanwhile.  After a failure, the others are asked to stop
 * (SIGTERM) rather than to drain: one may be waiting for the one that
 * failed, as outbox-clean --after waits for client-project.
 */
static void
finish(struct fanout *f, int failed)
{
	struct sub *s;
	sigset_t old;
	int i;

	if (failed && f->stop_sig == 0) {
		f->stop_sig = SIGTERM;
		for (i = 0; i < f->nsubs; i++)
			if (f->subs[i].pid > 0)
				kill(-f->subs[i].pid, SIGTERM);
	}

	for (i = 0; i < f->nsubs; i++) {
		s = &f->subs[i];
		if (s->fd < 0)
			continue;
		if (close(s->fd) < 0 && s->is_file && !s->failed)
			write_failed(s, errno);
		s->fd = -1;
	}
	sigprocmask(SIG_BLOCK, &wake_set, &old);
	for (;;) {
		forward_stop(f);
		if (reap(f) == 0)
			break;
		sigsuspend(&old);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/*
 * Report how a subscriber ended if it did not end well; 1 if so.  After a
 * stop signal was passed on, ending with status 0 or by that signal is
 * ending well.
 */
static int
report(const struct fanout *f, const struct sub *s)
{
	if (s->is_file || s->lost)
		return s->failed || s->lost;	/* reported already */
	if (WIFEXITED(s->wstatus)) {
		if (WEXITSTATUS(s->wstatus) == 0 && !s->failed)
			return 0;
		warnx("subscriber %d (%s): exited with status %d", s->n,
		    s->shown, WEXITSTATUS(s->wstatus));
	} else if (WIFSIGNALED(s->wstatus)) {
		if (f->stop_sig != 0 && WTERMSIG(s->wstatus) == f->stop_sig)
			return 0;
		warnx("subscriber %d (%s): killed by signal %d", s->n,
		    s->shown, WTERMSIG(s->wstatus));
	} else
		warnx("subscriber %d (%s): wait status %#x", s->n, s->shown,
		    (unsigned int)s->wstatus);
	return 1;
}

/* Copy one chunk to every subscriber.  0, or the exit status. */
static int
copy(struct fanout *f, const char *buf, size_t len)
{
	const char *p;
	int i, r;

	for (i = 0; i < f->nsubs; i++) {
		if ((r = put(f, &f->subs[i], buf, len)) < 0)
			return EX_TEMPFAIL;
		if (r > 0)
			return 0;	/* stopping: the rest is dropped */
	}
	f->bytes += len;
	for (p = buf; (p = memchr(p, '\n', (size_t)(buf + len - p))) != NULL;
	    p++)
		f->lines++;
	f->last_nl = buf[len - 1] == '\n';
	return 0;
}

/*
 * Copy stdin to the subscribers until end of input, chunk by chunk, as it
 * comes: lines are not parsed, so there is no line length limit.  A last
 * line without a newline gets one.  Returns the exit status.
 */
static int
run(struct fanout *f)
{
	struct pollfd *pfd;
	char *buf;
	ssize_t n;
	int i, r, status = 0;

	pfd = xmalloc(((size_t)f->nsubs + 1) * sizeof(*pfd));
	buf = xmalloc(CHUNK);
	f->last_nl = 1;
	for (;;) {
		forward_stop(f);
		if (f->stop_sig)
			break;
		prg_tick(&f->prg);
		if (child_ended) {
			reap(f);
			for (i = 0; i < f->nsubs; i++)
				if (f->subs[i].failed)
					status = EX_TEMPFAIL;
			if (status != 0)
				break;
		}
		if ((r = wait_input(f, pfd)) == 0)
			continue;
		if (r != 2) {
			status = r > 0 ? EX_TEMPFAIL : EX_SOFTWARE;
			break;
		}
		n = read(STDIN_FILENO, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0) {
			warn("stdin");
			status = EX_IOERR;
			break;
		}
		if (n == 0) {
			if (!f->last_nl)
				status = copy(f, "\n", 1);
			break;
		}
		if ((status = copy(f, buf, (size_t)n)) != 0)
			break;
	}
	finish(f, status == EX_TEMPFAIL);
	free(buf);
	free(pfd);
	return status;
}

int
main(int argc, char *argv[])
{
	enum { OPT_STATS = 256 };
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct fanout f;
	struct sub *s;
	int64_t every = 0;
	int bad = 0, ch, i, status = 0;

	init_signals();
	memset(&f, 0, sizeof(f));
	/* "+": the first operand ends the options, as for env(1). */
	while ((ch = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'V':
			util_version();
			return 0;
		case OPT_STATS:
			every = prg_option(optarg);
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		util_usage(synopsis);

	prg_init(&f.prg, every);
	prg_counter(&f.prg, "bytes", &f.bytes);
	prg_counter(&f.prg, "lines", &f.lines);
	f.subs = xcalloc((size_t)argc, sizeof(*f.subs));
	for (i = 0; i < argc; i++) {
		s = &f.subs[i];
		s->n = i + 1;
		s->spec = argv[i];
		s->shown = mask(argv[i]);
		s->is_file = strncmp(s->spec, FILE_PREFIX,
		    strlen(FILE_PREFIX)) == 0;
		s->fd = -1;
		status = s->is_file ? start_file(s) : start_command(s);
		if (status != 0)
			break;
		f.nsubs++;
	}
	if (status == 0)
		status = run(&f);
	else
		finish(&f, 0);	/* nothing was written: their input ends */

	for (i = 0; i < f.nsubs; i++)
		bad |= report(&f, &f.subs[i]);
	for (i = 0; i < argc; i++)
		free(f.subs[i].shown);
	free(f.subs);
	if (bad && status == 0)
		status = EX_TEMPFAIL;
	return util_exit(status);
}
