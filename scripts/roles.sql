-- roles.sql: least-privilege roles for the cqrs-pipes commands; run as the tables' owner, after schema.sql, then set passwords.
-- Idempotent.  Each command runs as its own role:
--   order-place, cqrs-httpd  cqrs_writer   EXECUTE on cqrs_place_order() (SECURITY DEFINER: it writes
--                                           the order, its items, the outbox row and the idempotency key),
--                                           SELECT on client and product; nothing else on any table
--   outbox-tail              cqrs_tailer   REPLICATION, and SELECT on the outbox (see README, "Least
--                                           privilege", for what REPLICATION also allows and how to contain it)
--   outbox-clean             cqrs_cleaner  deletes from the outbox (and reads its id, which a DELETE ... WHERE id needs)
-- The publication is made here, by the owner, since creating one needs ownership of the table.
-- Set passwords outside this file, e.g.: \password cqrs_writer (psql), or ALTER ROLE ... PASSWORD;
-- on the local stack (scram-sha-256 for every role): scripts/stack password cqrs_writer cqrs_tailer
-- cqrs_cleaner cqrs_monitor, which keeps generated ones in the stack's password file (PGPASSFILE).

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cqrs_writer') THEN
		CREATE ROLE cqrs_writer LOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cqrs_tailer') THEN
		CREATE ROLE cqrs_tailer LOGIN REPLICATION;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cqrs_cleaner') THEN
		CREATE ROLE cqrs_cleaner LOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'cqrs_outbox') THEN
		CREATE PUBLICATION cqrs_outbox FOR TABLE public.order_event WITH (publish = 'insert');
	END IF;
END
$$;

-- Start from nothing on every table and sequence, including what an older
-- roles.sql granted (the writer used to insert into the tables itself).
REVOKE ALL ON product, client, "order", order_item, order_event, order_request
	FROM cqrs_writer, cqrs_tailer, cqrs_cleaner;
REVOKE ALL ON SEQUENCE product_id_seq, client_id_seq, order_id_seq, order_item_id_seq,
	order_event_id_seq FROM cqrs_writer, cqrs_tailer, cqrs_cleaner;
REVOKE ALL ON FUNCTION cqrs_place_order(int, int[], int[], text) FROM PUBLIC, cqrs_tailer, cqrs_cleaner;

-- order-place and cqrs-httpd: orders only through the function, which
-- checks its arguments and runs as the tables' owner.  Reading clients and
-- products is what a writer needs to tell a user what an order refers to.
GRANT EXECUTE ON FUNCTION cqrs_place_order(int, int[], int[], text) TO cqrs_writer;
GRANT SELECT ON product, client TO cqrs_writer;

-- outbox-tail
GRANT SELECT ON order_event TO cqrs_tailer;

-- outbox-clean
GRANT DELETE ON order_event TO cqrs_cleaner;
GRANT SELECT (id) ON order_event TO cqrs_cleaner;

-- ---------------------------------------------------------------------------
-- cqrs_monitor: outbox-status (see outbox-status(1), "Privileges").  Read-only:
-- pg_monitor lets it see pg_stat_replication's figures of the tailer's walsender;
-- of the outbox it reads only id and event_date (a count and ages), never names
-- or e-mail addresses.  Everything else it reads is open to every role.  Idempotent.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cqrs_monitor') THEN
		CREATE ROLE cqrs_monitor LOGIN;
	END IF;
	IF NOT pg_has_role('cqrs_monitor', 'pg_monitor', 'MEMBER') THEN
		GRANT pg_monitor TO cqrs_monitor;
	END IF;
END
$$;
ALTER ROLE cqrs_monitor SET default_transaction_read_only = on;
REVOKE ALL ON product, client, "order", order_item, order_event FROM cqrs_monitor;
GRANT SELECT (id, event_date) ON order_event TO cqrs_monitor;
