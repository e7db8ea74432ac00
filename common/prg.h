/* prg: progress lines, a command's counts and rates so far as one timestamped JSON line on stderr, on SIGUSR1 or every few seconds. */
#ifndef CQRS_PRG_H
#define CQRS_PRG_H

#include <stddef.h>
#include <stdint.h>

#define PRG_MAX		16	/* figures per line */
#define PRG_NAME_MAX	32	/* longest figure name, with its NUL */
#define PRG_EVERY_MIN	100	/* --stats: at least 0.1 s ... */
#define PRG_EVERY_MAX	86400000	/* ... and at most a day, in ms */

/* One figure of the line: a counter (with its rate) or a gauge. */
struct prg_fig {
	char		 name[PRG_NAME_MAX];
	int		 kind;
	const void	*ptr;		/* the counter the command increments */
	int64_t		(*fn)(void *);	/* a gauge, read when a line is made */
	void		*arg;
};

struct prg {
	struct prg_fig	 fig[PRG_MAX];
	size_t		 n;
	int		 fd;		/* where lines go: standard error */
	int64_t		 start_ms;	/* util_mono_ms() at prg_init() */
	int64_t		 every_ms;	/* 0: on SIGUSR1 (and prg_print) only */
	int64_t		 next_ms;	/* when the next periodic line is due */
	unsigned long	 nlines;	/* lines printed */
};

void	prg_init(struct prg *, int64_t);
int	prg_counter(struct prg *, const char *, const uint64_t *);
int	prg_counter_ul(struct prg *, const char *, const unsigned long *);
int	prg_gauge(struct prg *, const char *, int64_t (*)(void *), void *);
int	prg_every(const char *, int64_t *);
int64_t	prg_option(const char *);
int	prg_tick(struct prg *);
int	prg_print(struct prg *);
int	prg_timeout(const struct prg *, int);
size_t	prg_line(const struct prg *, char *, size_t);

#endif
