-- roles.sql: least-privilege roles for the cqrs-pipes commands; run as the tables' owner, then set passwords.
-- Idempotent.  Each command runs as its own role:
--   order-place            cqrs_writer   inserts orders, items and events; reads clients and products
--   outbox-tail            cqrs_tailer   REPLICATION, and SELECT on the outbox
--   outbox-clean           cqrs_cleaner  deletes from the outbox (and reads its id, which a DELETE ... WHERE id needs)
-- The publication is made here, by the owner, since creating one needs ownership of the table.
-- Set passwords outside this file, e.g.: \password cqrs_writer (psql), or ALTER ROLE ... PASSWORD.

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

REVOKE ALL ON product, client, "order", order_item, order_event FROM cqrs_writer, cqrs_tailer, cqrs_cleaner;

-- order-place: one statement inserts the order, its items and the event, and returns their ids.
GRANT SELECT ON product, client TO cqrs_writer;
GRANT INSERT ON "order", order_item, order_event TO cqrs_writer;
GRANT SELECT (id) ON "order" TO cqrs_writer;
GRANT SELECT (id, order_total) ON order_event TO cqrs_writer;
GRANT USAGE ON SEQUENCE order_id_seq, order_item_id_seq, order_event_id_seq TO cqrs_writer;

-- outbox-tail
GRANT SELECT ON order_event TO cqrs_tailer;

-- outbox-clean
GRANT DELETE ON order_event TO cqrs_cleaner;
GRANT SELECT (id) ON order_event TO cqrs_cleaner;
