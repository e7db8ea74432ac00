/* client-project: apply outbox events to the per-client read model in Redis, exactly once. */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "evt.h"
#include "rmd.h"
#include "prg.h"
#include "ndj.h"
#include "rds.h"
#include "util.h"

#define DEFAULT_BATCH	512
#define DEFAULT_WINDOW	512
#define NFIELDS		8	/* script arguments per event */
#define LEASE_MS	10000	/* a projector's lease, renewed ... */
#define LEASE_EVERY_MS	2000	/* ... this often */

/*
 * The whole batch in one atomic step.  For each event, every check comes
 * before any change, and the changes are written only at the end, once
 * per client, so an event that fails leaves no trace and the events
 * before it stay applied.
 *
 * KEYS: RMD_MODEL_KEY (unless ARGV[4] is "0"), then for each client of the
 * batch its hash "client:N" and its window "{client:N}:ids" (the same
 * cluster hash slot).
 * RMD_MODEL_KEY marks the read model as made (a FLUSHALL removes it: LOST)
 * and keeps the source of the ordered stream it follows (src): events of
 * another source are refused (MSRC).
 * ARGV: source, ordered ("1"/"0"), window, marker ("1"/"0"), whether
 * to make the mark if it is missing ("1": a first run), the time, then per
 * event: key index, position ("" for a snapshot row or an unordered
 * source), outbox id, xid (or ""), name, email, cents, event_date.
 *
 * A client's hash keeps, besides name, email, total (cents) and
 * last_purchase: src and pos, the last applied position and its source;
 * idn, the number of ids in its window, and low, the highest id that left
 * it; rbx, the snapshot "xmin:xmax:xip,..." of a client-rebuild.  The
 * window, " 1 5 9 ", holds the outbox ids of its last `window` to
 * 2 * `window` applied events: ids are appended, and it is cut back to
 * `window` once it holds twice that, so that a batch writes only what it
 * adds.
 *
 * Per event: a position of another source is refused (SRC).  A position
 * at or below the client's is a replay (0).  An id in the window was
 * applied (2).  Without a position, an xid visible in the rebuild's
 * snapshot was counted by the rebuild (2), and an id at or below low
 * cannot be told apart (AMBIG).  A total beyond 9e18 cents is refused
 * (OVERFLOW).  Otherwise the event is applied (1).  Returns the status
 * (OK, LOST, SRC, AMBIG, OVERFLOW), the index of the event that stopped
 * the batch, a detail, and one code per event processed.
 */
static const char script[] =
"local src, ordered, K = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])\n"
"local k0 = 0\n"
"if ARGV[4] == '1' then\n"
"  k0 = 1\n"
"  local m = redis.call('HGET', KEYS[1], 'src')\n"
"  if not m and redis.call('EXISTS', KEYS[1]) == 0 then\n"
"    if ARGV[5] ~= '1' then return {'LOST', 0, '', ''} end\n"
"    redis.call('HSET', KEYS[1], 'created', ARGV[6])\n"
"  end\n"
"  if ordered then\n"
"    if m and m ~= src then return {'MSRC', 0, m, ''} end\n"
"    if not m then redis.call('HSET', KEYS[1], 'src', src) end\n"
"  end\n"
"end\n"
"local st = {}\n"
"local function state(ki)\n"
"  local s = st[ki]\n"
"  if s then return s end\n"
"  local key, ikey = KEYS[k0 + 2 * ki - 1], KEYS[k0 + 2 * ki]\n"
"  local h = redis.call('HMGET', key, 'src', 'pos', 'idn', 'low', 'total',"
" 'last_purchase', 'rbx')\n"
"  s = {key = key, ikey = ikey, src = h[1], pos = h[2],"
" ids = redis.call('GET', ikey) or ' ', idn = tonumber(h[3]) or 0,"
" low = tonumber(h[4]) or 0, tot = tonumber(h[5]) or 0,"
" lp = tonumber(h[6]), rbx = h[7], delta = 0, new = {}, newset = {}}\n"
"  st[ki] = s\n"
"  return s\n"
"end\n"
"local function visible(xid, snap)\n"
"  local xmin, xmax, xip = string.match(snap, '^(%d+):(%d+):(.*)$')\n"
"  if not xmin then return false end\n"
"  xmin, xmax = tonumber(xmin), tonumber(xmax)\n"
"  local c = math.floor(xmax / 4294967296) * 4294967296 + tonumber(xid)\n"
"  if c > xmax + 2147483648 then c = c - 4294967296\n"
"  elseif c + 2147483648 < xmax then c = c + 4294967296 end\n"
"  if c < xmin then return true end\n"
"  if c >= xmax then return false end\n"
"  return not string.find(',' .. xip .. ',',"
" ',' .. string.format('%.0f', c) .. ',', 1, true)\n"
"end\n"
"local codes = {}\n"
"local n = (#ARGV - 6) / 8\n"
"local status, at, detail = 'OK', 0, ''\n"
"for i = 0, n - 1 do\n"
"  local b = 7 + i * 8\n"
"  local ki, pos, id, xid = tonumber(ARGV[b]), ARGV[b + 1], ARGV[b + 2],"
" ARGV[b + 3]\n"
"  local s = state(ki)\n"
"  local code\n"
"  if pos ~= '' then\n"
"    if s.src and s.src ~= src then\n"
"      status, at, detail = 'SRC', i, s.src\n"
"      break\n"
"    end\n"
"    if s.pos and s.pos >= pos then code = 0 end\n"
"  end\n"
"  if not code and (s.newset[id] or"
" string.find(s.ids, ' ' .. id .. ' ', 1, true)) then\n"
"    code = 2\n"
"  end\n"
"  if not code and pos == '' then\n"
"    if s.rbx and xid ~= '' and visible(xid, s.rbx) then\n"
"      code = 2\n"
"    elseif tonumber(id) <= s.low then\n"
"      status, at, detail = 'AMBIG', i, string.format('%.0f', s.low)\n"
"      break\n"
"    end\n"
"  end\n"
"  if not code then\n"
"    local cents = tonumber(ARGV[b + 6])\n"
"    if s.tot + cents > 9e18 then\n"
"      status, at = 'OVERFLOW', i\n"
"      break\n"
"    end\n"
"    if math.abs(s.delta + cents) >= 4503599627370496 then\n"
"      redis.call('HINCRBY', s.key, 'total', string.format('%.0f', s.delta))\n"
"      s.delta = 0\n"
"    end\n"
"    s.tot = s.tot + cents\n"
"    s.delta = s.delta + cents\n"
"    s.name, s.email, s.applied = ARGV[b + 4], ARGV[b + 5], true\n"
"    local date = tonumber(ARGV[b + 7])\n"
"    if not s.lp or s.lp < date then s.lp = date end\n"
"    s.new[#s.new + 1] = id\n"
"    s.newset[id] = true\n"
"    code = 1\n"
"  end\n"
"  if pos ~= '' and code ~= 0 then\n"
"    s.pos, s.src, s.moved = pos, src, true\n"
"  end\n"
"  codes[#codes + 1] = code\n"
"end\n"
"for ki, s in pairs(st) do\n"
"  local key = s.key\n"
"  if s.applied then\n"
"    local add = table.concat(s.new, ' ') .. ' '\n"
"    s.idn = s.idn + #s.new\n"
"    if s.idn <= 2 * K then\n"
"      if s.ids == ' ' then redis.call('SET', s.ikey, ' ' .. add)\n"
"      else redis.call('APPEND', s.ikey, add) end\n"
"    else\n"
"      s.ids = s.ids .. add\n"
"      local j, drop = 1, s.idn - K\n"
"      for old in string.gmatch(s.ids, '%d+') do\n"
"        old = tonumber(old)\n"
"        if old > s.low then s.low = old end\n"
"        drop = drop - 1\n"
"        if drop == 0 then break end\n"
"      end\n"
"      for k = 1, s.idn - K do j = string.find(s.ids, ' ', j + 1, true) end\n"
"      redis.call('SET', s.ikey, string.sub(s.ids, j))\n"
"      s.idn = K\n"
"    end\n"
"    redis.call('HSET', key, 'name', s.name, 'email', s.email,"
" 'last_purchase', string.format('%.0f', s.lp), 'idn', s.idn,"
" 'low', string.format('%.0f', s.low))\n"
"    redis.call('HINCRBY', key, 'total', string.format('%.0f', s.delta))\n"
"  end\n"
"  if s.moved then redis.call('HSET', key, 'src', s.src, 'pos', s.pos) end\n"
"end\n"
"return {status, at, detail, table.concat(codes)}\n";

struct event {
	size_t		 key;		/* index in the batch's keys */
	uint16_t	 slot;		/* the key's cluster hash slot */
	char		 pos[32];	/* "" for no position check */
	char		 id[24];
	char		 xid[24];
	char		 cents[24];
	char		 date[24];
	char		*name;
	char		*email;
	int64_t		 ts_us;		/* the commit time, or -1 */
};

struct projector {
	redisContext	*rc;
	char		 sha[41];
	struct event	*ev;
	size_t		 n;
	char		 src[ACK_SRC_MAX];	/* of the events taken */
	int		 ordered;
	char		 window[16];
	int		 cluster;	/* group each call by hash slot */
	char	       **keys;		/* distinct client keys of the batch */
	char	       **ikeys;		/* and their windows' keys */
	size_t		 nkeys;
	int64_t		*key_client;	/* their client ids */
	size_t		*slots;		/* open addressing: client -> key + 1 */
	size_t		 nslots;
	char		 lease[128];
	int64_t		 lease_at;
	int		 new_model;	/* no mark yet, and nothing acknowledged */
	unsigned long	 applied;
	unsigned long	 replayed;
	unsigned long	 dups;
	FILE		*latency;	/* -L: commit-to-applied times */
};

static const char synopsis[] =
    "usage: client-project [-hkvV] [-a ack-file] [-b batch] "
    "[-L latency-file]\n"
    "                      [-P password-file] [-r url] "
    "[-W window] [--reject-file file]\n"
    "                      [--stats seconds]\n";

static const char options[] =
    "  -a, --ack-file FILE       record the position applied so far in FILE\n"
    "  -b, --batch N             events per Redis round trip (1-65536, 512)\n"
    "  -h, --help                print this help and exit\n"
    "  -k, --keep-going          report a bad event, skip it, go on (exit 65)\n"
    "  -L, --latency FILE        append commit-to-applied milliseconds\n"
    "  -P, --password-file FILE  the Redis password, from a file\n"
    "  -r, --redis URL           the Redis server (default $REDIS_URL)\n"
    "      --reject-file FILE    keep events that cannot be applied in FILE\n"
    "      --stats SECONDS       print a line of progress this often\n"
    "  -v, --verbose             print counts at exit\n"
    "  -V, --version             print the version and exit\n"
    "  -W, --window N            outbox ids remembered per client, at least"
    " (1-100000, 512)\n";

/* CRC16 (XMODEM), as Redis Cluster hashes keys into 16384 slots. */
static uint16_t
key_slot(const char *key)
{
	uint16_t crc = 0;
	int i;

	for (; *key != '\0'; key++) {
		crc ^= (uint16_t)((unsigned char)*key << 8);
		for (i = 0; i < 8; i++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) :
			    (uint16_t)(crc << 1);
	}
	return crc & 16383;
}

static int
load_script(struct projector *p)
{
	redisReply *r;
	int ex;

	r = redisCommand(p->rc, "SCRIPT LOAD %s", script);
	if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
		warnx("redis: SCRIPT LOAD: %s", r ? (r->str ? r->str : "?") :
		    p->rc->errstr);
		ex = rds_exit_code(p->rc, r);
		freeReplyObject(r);
		return ex;
	}
	memcpy(p->sha, r->str, 41);
	freeReplyObject(r);
	return 0;
}

/*
 * Renew this projector's lease (before any write, when the last renewal
 * is LEASE_EVERY_MS old), and stop while a client-rebuild runs.  A
 * rebuild sets RMD_REBUILD_KEY, then refuses to run if a lease is held; this
 * sets its lease, then looks for RMD_REBUILD_KEY: whichever comes second sees
 * the other.  A projector stopped for longer than its lease renews it
 * before writing again, so it never writes during a rebuild; after one,
 * the rebuild's positions make its events apply exactly once.
 */
static int
renew_lease(struct projector *p, int first)
{
	redisReply *r;
	int ex, lost;

	(void)first;
	if ((ex = rds_command(p->rc, NULL, "SET %s 1 PX %d", p->lease,
	    LEASE_MS)) != 0)
		return ex;
	if ((ex = rds_command(p->rc, &r, "EXISTS %s", RMD_REBUILD_KEY)) != 0)
		return ex;
	lost = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	freeReplyObject(r);
	if (lost) {
		warnx("redis: a client-rebuild is running on this read model "
		    "(%s exists); not applying", RMD_REBUILD_KEY);
		return EX_TEMPFAIL;
	}
	p->lease_at = util_mono_ms();
	return 0;
}

/*
 * Before the first event: take the lease; if the ack file says events
 * were applied, the read model must still be there (a FLUSHALL, or a
 * Redis restarted without its AOF, leaves it empty); a new one is marked.
 */
static int
start(void *ctx, const struct ack_pos *acked)
{
	struct projector *p = ctx;
	redisReply *r;
	int ex, have;

	if ((ex = renew_lease(p, 1)) != 0)
		return ex;
	if ((ex = rds_command(p->rc, &r, "EXISTS %s", RMD_MODEL_KEY)) != 0)
		return ex;
	have = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	freeReplyObject(r);
	/* A read model of version 0.1 has clients but no mark: adopt it. */
	if (!have && acked != NULL) {
		if ((ex = rds_command(p->rc, &r,
		    "SCAN 0 MATCH client:* COUNT 1000")) != 0)
			return ex;
		have = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
		    r->element[1]->type == REDIS_REPLY_ARRAY &&
		    r->element[1]->elements > 0;
		freeReplyObject(r);
		if (have && (ex = rds_command(p->rc, NULL,
		    "HSET %s created %lld", RMD_MODEL_KEY,
		    (long long)(util_real_ms() / 1000))) != 0)
			return ex;
	}
	if (!have && acked != NULL) {
		warnx("redis: the read model is gone (no %s), but the ack file "
		    "says events up to %" PRIu64 "/%" PRIu64 " were applied to "
		    "it: Redis lost its data (FLUSHALL, or a restart without "
		    "its AOF); run client-rebuild, then start again",
		    RMD_MODEL_KEY, acked->lsn, acked->seq);
		return EX_CONFIG;
	}
	/* A new read model is marked with its first write. */
	p->new_model = !have;
	return 0;
}

/*
 * Before the first acknowledgement of a new read model (only skipped
 * events so far): mark it, so that the next run finds it.
 */
static int
before_ack(void *ctx)
{
	struct projector *p = ctx;
	int ex;

	if (!p->new_model)
		return 0;
	if ((ex = rds_command(p->rc, NULL, "HSETNX %s created %lld",
	    RMD_MODEL_KEY, (long long)(util_real_ms() / 1000))) != 0)
		return ex;
	p->new_model = 0;
	return 0;
}

/* The batch's index of the client's key, added when new. */
static size_t
key_of(struct projector *p, int64_t client)
{
	size_t h = (size_t)client * 2654435761u % p->nslots, k;
	char buf[32];

	for (; p->slots[h] != 0; h = (h + 1) % p->nslots)
		if (p->key_client[p->slots[h] - 1] == client)
			return p->slots[h] - 1;
	k = p->nkeys++;
	p->slots[h] = k + 1;
	p->key_client[k] = client;
	snprintf(buf, sizeof(buf), "client:%" PRId64, client);
	p->keys[k] = xstrdup(buf);
	snprintf(buf, sizeof(buf), "{client:%" PRId64 "}:ids", client);
	p->ikeys[k] = xstrdup(buf);
	return k;
}

/* Check one event and queue it; other tables are skipped. */
static int
take(void *ctx, const struct scan *ev, const struct evt_meta *m,
    char *why, size_t wlen)
{
	struct projector *p = ctx;
	struct event *e = &p->ev[p->n];
	struct evt_order o;

	if (scan_get(ev, "__table") == NULL) {
		snprintf(why, wlen, "__table: missing");
		return EVT_BAD;
	}
	if (!evt_table_is(ev, EVT_TABLE))
		return EVT_SKIP;
	if (evt_order(ev, m, &o, why, wlen) < 0)
		return EVT_BAD;
	if (p->n == 0) {
		memcpy(p->src, m->pos.src, sizeof(p->src));
		p->ordered = evt_src_ordered(p->src);
	}
	e->key = key_of(p, o.id_client);
	e->slot = key_slot(p->keys[e->key]);
	if (p->ordered && m->op != 'r')
		snprintf(e->pos, sizeof(e->pos), "%020" PRIu64 "%010" PRIu64,
		    m->pos.lsn, m->pos.seq);
	else
		e->pos[0] = '\0';
	snprintf(e->id, sizeof(e->id), "%" PRId64, o.id);
	if (o.xid >= 0)
		snprintf(e->xid, sizeof(e->xid), "%" PRId64, o.xid);
	else
		e->xid[0] = '\0';
	snprintf(e->cents, sizeof(e->cents), "%" PRId64, o.cents);
	snprintf(e->date, sizeof(e->date), "%" PRId64, o.event_date);
	e->name = xstrdup(o.name);
	e->email = xstrdup(o.email);
	e->ts_us = o.ts_us;
	p->n++;
	return 0;
}

/* Queue one EVALSHA for the events from..n whose key is in slot. */
static size_t
send_call(struct projector *p, size_t from, int slot, size_t *map,
    size_t *order)
{
	const char **argv;
	size_t *lens, argc, i, k, nk = 0, ne = 0, nargs;
	char nkeys[16], ki[16], now[24];
	struct event *e;
	char *kis;

	/* The keys of this call, numbered from 1. */
	for (k = 0; k < p->nkeys; k++)
		map[k] = 0;
	for (i = from; i < p->n; i++) {
		e = &p->ev[i];
		if (slot >= 0 && e->slot != slot)
			continue;
		if (map[e->key] == 0)
			map[e->key] = ++nk;
		order[ne++] = i;
	}
	nargs = 3 + (p->cluster ? 0 : 1) + 2 * nk + 6 + ne * NFIELDS;
	argv = xmalloc(sizeof(*argv) * nargs);
	lens = xmalloc(sizeof(*lens) * nargs);
	kis = xmalloc(ne * 12 + 1);
	argc = 0;
	argv[argc++] = "EVALSHA";
	argv[argc++] = p->sha;
	snprintf(nkeys, sizeof(nkeys), "%zu", 2 * nk + (p->cluster ? 0 : 1));
	argv[argc++] = nkeys;
	if (!p->cluster)
		argv[argc++] = RMD_MODEL_KEY;
	for (k = 0; k < p->nkeys; k++)
		if (map[k] != 0) {
			argv[argc + 2 * map[k] - 2] = p->keys[k];
			argv[argc + 2 * map[k] - 1] = p->ikeys[k];
		}
	argc += 2 * nk;
	argv[argc++] = p->src;
	argv[argc++] = p->ordered ? "1" : "0";
	argv[argc++] = p->window;
	argv[argc++] = p->cluster ? "0" : "1";
	argv[argc++] = p->new_model ? "1" : "0";
	snprintf(now, sizeof(now), "%lld", (long long)(util_real_ms() / 1000));
	argv[argc++] = now;
	for (i = 0; i < ne; i++) {
		e = &p->ev[order[i]];
		snprintf(ki, sizeof(ki), "%zu", map[e->key]);
		memcpy(kis + i * 12, ki, strlen(ki) + 1);
		argv[argc++] = kis + i * 12;
		argv[argc++] = e->pos;
		argv[argc++] = e->id;
		argv[argc++] = e->xid;
		argv[argc++] = e->name;
		argv[argc++] = e->email;
		argv[argc++] = e->cents;
		argv[argc++] = e->date;
	}
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redisAppendCommandArgv(p->rc, (int)argc, argv, lens);
	free(argv);
	free(lens);
	free(kis);
	return ne;
}

/* Commit-to-applied times of the applied events, for benchmarks. */
static int
note_latency(struct projector *p, size_t from, size_t to)
{
	struct timespec ts;
	int64_t now;
	size_t i;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	for (i = from; i < to; i++)
		if (p->ev[i].ts_us >= 0)
			fprintf(p->latency, "%" PRId64 "\n", now - p->ev[i].ts_us);
	if (fflush(p->latency) != 0 || ferror(p->latency)) {
		warn("latency file");
		return EX_IOERR;
	}
	return 0;
}

/*
 * Send the taken events from index from on, one script call (or one per
 * hash slot on a cluster), and read the outcome.  If Redis lost the
 * script (SCRIPT FLUSH), load it again and send again: the checks make
 * that harmless.
 */
static int
apply(void *ctx, size_t from, size_t *failed, char *why, size_t wlen)
{
	struct projector *p = ctx;
	size_t *map, *order, *call_order, ncalls = 0, ne, i, k, stop = p->n;
	size_t *call_n;
	int slot, tries, ex = 0, noscript, model_src = 0;
	char st[16] = "OK", detail[ACK_SRC_MAX] = "";
	redisReply *r;

	if (from >= p->n)
		return 0;
	if (util_mono_ms() - p->lease_at >= LEASE_EVERY_MS &&
	    (ex = renew_lease(p, 0)) != 0)
		return ex;
	map = xmalloc(sizeof(*map) * (p->nkeys ? p->nkeys : 1));
	order = xmalloc(sizeof(*order) * (p->n - from));
	call_order = xmalloc(sizeof(*call_order) * (p->n - from));
	call_n = xmalloc(sizeof(*call_n) * (p->n - from));
	for (tries = 0; tries < 2; tries++) {
		ncalls = 0;
		ne = 0;
		if (!p->cluster) {
			call_n[ncalls++] = send_call(p, from, -1, map, order);
			memcpy(call_order, order, sizeof(*order) * call_n[0]);
		} else {
			/* One call per slot, in the order slots first appear. */
			for (i = from; i < p->n; i++) {
				slot = p->ev[i].slot;
				for (k = from; k < i; k++)
					if (p->ev[k].slot == slot)
						break;
				if (k < i)
					continue;
				call_n[ncalls] = send_call(p, from, slot, map,
				    order);
				memcpy(call_order + ne, order,
				    sizeof(*order) * call_n[ncalls]);
				ne += call_n[ncalls++];
			}
		}
		noscript = 0;
		ne = 0;
		for (k = 0; k < ncalls; ne += call_n[k++]) {
			if (redisGetReply(p->rc, (void **)&r) != REDIS_OK) {
				warnx("redis: %s", p->rc->errstr);
				ex = EX_UNAVAILABLE;
				goto out;
			}
			if (r->type == REDIS_REPLY_ERROR &&
			    strncmp(r->str, "NOSCRIPT", 8) == 0) {
				noscript = 1;
			} else if (r->type != REDIS_REPLY_ARRAY ||
			    r->elements != 4 ||
			    r->element[0]->type != REDIS_REPLY_STRING ||
			    r->element[1]->type != REDIS_REPLY_INTEGER ||
			    r->element[3]->type != REDIS_REPLY_STRING) {
				if (ex == 0) {
					warnx("redis: %s", r->type ==
					    REDIS_REPLY_ERROR ? r->str :
					    "unexpected reply to the script");
					ex = rds_exit_code(p->rc, r);
				}
			} else {
				for (i = 0; i < r->element[3]->len; i++) {
					if (r->element[3]->str[i] == '1')
						p->applied++;
					else if (r->element[3]->str[i] == '2')
						p->dups++;
					else
						p->replayed++;
				}
				if (strcmp(r->element[0]->str, "OK") != 0 &&
				    call_order[ne + (size_t)r->element[1]->integer]
				    < stop) {
					stop = call_order[ne +
					    (size_t)r->element[1]->integer];
					snprintf(st, sizeof(st), "%s",
					    r->element[0]->str);
					snprintf(detail, sizeof(detail), "%s",
					    r->element[2]->type ==
					    REDIS_REPLY_STRING ?
					    r->element[2]->str : "");
					if (strcmp(st, "MSRC") == 0) {
						model_src = 1;
						memcpy(st, "SRC", 4);
					}
				}
			}
			freeReplyObject(r);
		}
		if (ex != 0 || !noscript)
			break;
		if ((ex = load_script(p)) != 0)
			break;
	}
	if (ex == 0)
		p->new_model = 0;
	if (ex == 0 && p->latency != NULL)
		ex = note_latency(p, from, stop);
	if (ex != 0 || stop == p->n)
		goto out;
	if (strcmp(st, "LOST") == 0) {
		warnx("redis: the read model is gone (no %s): Redis lost its "
		    "data while this ran (FLUSHALL, or a restart without its "
		    "AOF); run client-rebuild, then start again", RMD_MODEL_KEY);
		ex = EX_CONFIG;
	} else if (strcmp(st, "SRC") == 0) {
		warnx("%s: its read model holds positions of \"%s\", this "
		    "event is from \"%s\": positions of two streams cannot be "
		    "compared (a rebuilt or restored database, or another "
		    "slot); run client-rebuild to start the read model from "
		    "this database", model_src ? "the read model" :
		    p->keys[p->ev[stop].key], detail, p->src);
		ex = EX_CONFIG;
	} else {
		if (strcmp(st, "AMBIG") == 0)
			snprintf(why, wlen, "id %s: cannot tell whether it was "
			    "applied: the read model of %s remembers only ids "
			    "above %s (raise -W, or run client-rebuild)",
			    p->ev[stop].id, p->keys[p->ev[stop].key], detail);
		else
			snprintf(why, wlen, "order_total: the total of %s would "
			    "pass 9e18 cents", p->keys[p->ev[stop].key]);
		*failed = stop;
		ex = EVT_BAD;
	}
out:
	free(map);
	free(order);
	free(call_order);
	free(call_n);
	return ex;
}

/* Forget the batch: free the events, the keys and their index. */
static void
clear_batch(struct projector *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		free(p->ev[i].name);
		free(p->ev[i].email);
	}
	for (i = 0; i < p->nkeys; i++) {
		free(p->keys[i]);
		free(p->ikeys[i]);
	}
	memset(p->slots, 0, sizeof(*p->slots) * p->nslots);
	p->n = 0;
	p->nkeys = 0;
}

static int
apply_and_clear(void *ctx, size_t from, size_t *failed, char *why,
    size_t wlen)
{
	struct projector *p = ctx;
	int ex;

	ex = apply(ctx, from, failed, why, wlen);
	if (ex != EVT_BAD)
		clear_batch(p);
	return ex;
}

/* Whether the server runs in cluster mode. */
static int
is_cluster(struct projector *p, int *cluster)
{
	redisReply *r;
	int ex;

	if ((ex = rds_command(p->rc, &r, "INFO cluster")) != 0)
		return ex;
	*cluster = r->type == REDIS_REPLY_STRING &&
	    strstr(r->str, "cluster_enabled:1") != NULL;
	freeReplyObject(r);
	return 0;
}

int
main(int argc, char *argv[])
{
	enum { OPT_REJECT = 256, OPT_STATS };
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "latency", required_argument, NULL, 'L' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "redis", required_argument, NULL, 'r' },
		{ "reject-file", required_argument, NULL, OPT_REJECT },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "window", required_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 }
	};
	struct projector p;
	struct evt_ops ops;
	struct ndj_reader in;
	const char *url = NULL, *pass_file = NULL;
	char *end, host[64];
	long batch = DEFAULT_BATCH, window = DEFAULT_WINDOW;
	int64_t every = 0;
	struct prg prg;
	int ch, ex, verbose = 0;

	util_signals();
	memset(&ops, 0, sizeof(ops));
	memset(&p, 0, sizeof(p));
	while ((ch = getopt_long(argc, argv, "a:b:hkL:P:r:vVW:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			ops.ack_file = optarg;
			break;
		case 'b':
			batch = strtol(optarg, &end, 10);
			if (*end != '\0' || batch < 1 || batch > 65536)
				errx(EX_USAGE, "-b %s: want 1 to 65536", optarg);
			break;
		case 'k':
			ops.keep_going = 1;
			break;
		case 'L':
			if (p.latency != NULL)
				fclose(p.latency);
			if ((p.latency = fopen(optarg, "a")) == NULL)
				err(EX_CANTCREAT, "%s", optarg);
			break;
		case 'P':
			pass_file = optarg;
			break;
		case 'r':
			url = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'V':
			util_version();
			return 0;
		case 'W':
			window = strtol(optarg, &end, 10);
			if (*end != '\0' || window < 1 || window > 100000)
				errx(EX_USAGE, "-W %s: want 1 to 100000", optarg);
			break;
		case OPT_REJECT:
			ops.reject_file = optarg;
			break;
		case OPT_STATS:
			every = prg_option(optarg);
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc)
		util_usage(synopsis);

	if ((p.rc = rds_connect(url, pass_file, &ex)) == NULL)
		return util_exit(ex);
	if ((ex = load_script(&p)) != 0 || (ex = is_cluster(&p, &p.cluster)))
		goto done;
	snprintf(p.window, sizeof(p.window), "%ld", window);
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(p.lease, sizeof(p.lease), "%s%s:%ld", RMD_LEASE_PREFIX, host,
	    (long)getpid());
	ndj_reader_init(&in, STDIN_FILENO, "stdin");
	p.ev = xmalloc(sizeof(*p.ev) * (size_t)batch);
	p.keys = xmalloc(sizeof(*p.keys) * (size_t)batch);
	p.ikeys = xmalloc(sizeof(*p.ikeys) * (size_t)batch);
	p.key_client = xmalloc(sizeof(*p.key_client) * (size_t)batch);
	p.nslots = (size_t)batch * 2 + 1;
	p.slots = xcalloc(p.nslots, sizeof(*p.slots));
	prg_init(&prg, every);
	prg_counter_ul(&prg, "applied", &p.applied);
	prg_counter_ul(&prg, "replayed", &p.replayed);
	prg_counter_ul(&prg, "replayed_acked", &ops.nreplayed);
	prg_counter_ul(&prg, "duplicates", &p.dups);
	prg_counter_ul(&prg, "skipped", &ops.nskipped);
	prg_counter_ul(&prg, "rejected", &ops.nrejected);
	ops.prg = &prg;
	ops.take = take;
	ops.apply = apply_and_clear;
	ops.start = start;
	ops.before_ack = before_ack;
	ops.ctx = &p;
	ops.batch = (size_t)batch;

	ex = evt_run(&ops, &in);

	if (verbose)
		fprintf(stderr, "client-project: %lu applied, %lu replayed, "
		    "%lu duplicates, %lu skipped, %lu rejected\n", p.applied,
		    p.replayed + ops.nreplayed, p.dups, ops.nskipped,
		    ops.nrejected);
	clear_batch(&p);
	/* Give the lease back: a rebuild need not wait for it. */
	if (p.rc->err == 0)
		freeReplyObject(redisCommand(p.rc, "DEL %s", p.lease));
	free(p.ev);
	free(p.keys);
	free(p.ikeys);
	free(p.key_client);
	free(p.slots);
	ndj_reader_free(&in);
done:
	redisFree(p.rc);
	if (p.latency != NULL)
		fclose(p.latency);
	return util_exit(ex);
}
