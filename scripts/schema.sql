-- cqrs-pipes schema: the AWS sample's tables and columns, with stronger types and checks.
--
-- Idempotent: run it as the tables' owner on a new database, or again on an
-- existing one (a database the AWS sample made included: its tables are kept
-- as they are) to add what is missing: the order_request table and the
-- function cqrs_place_order(), through which order-place and cqrs-httpd
-- place orders.

CREATE TABLE IF NOT EXISTS product (
	id serial PRIMARY KEY,
	name text NOT NULL,
	price numeric(12,2) NOT NULL CHECK (price >= 0)
);

CREATE TABLE IF NOT EXISTS client (
	id serial PRIMARY KEY,
	name text NOT NULL,
	email text NOT NULL
);

CREATE TABLE IF NOT EXISTS "order" (
	id bigserial PRIMARY KEY,
	id_client int NOT NULL REFERENCES client,
	placement_date bigint NOT NULL	-- Unix epoch seconds, UTC
);

CREATE TABLE IF NOT EXISTS order_item (
	id bigserial PRIMARY KEY,
	id_order bigint NOT NULL REFERENCES "order",
	id_product int NOT NULL REFERENCES product,
	price_when_item_was_ordered numeric(12,2) NOT NULL,
	quantity int NOT NULL CHECK (quantity > 0)
);

-- The outbox: one row per placed order, written in the order's transaction.
CREATE TABLE IF NOT EXISTS order_event (
	id bigserial PRIMARY KEY,
	id_client int NOT NULL REFERENCES client,
	name text NOT NULL,
	email text NOT NULL,
	order_total numeric(14,2) NOT NULL,
	event_date bigint NOT NULL	-- Unix epoch seconds, UTC
);

-- Idempotency keys (order-place's "request_id", cqrs-httpd's
-- Idempotency-Key): written in the order's own transaction, so that a key
-- is stored if and only if its order is.  A key names one order for 24
-- hours (the window); after that it may be used again, and
-- cqrs_place_order() deletes a few expired keys each time it stores one.
-- fingerprint is the order's content (client, products, quantities): the
-- same key with another order is refused.
CREATE TABLE IF NOT EXISTS order_request (
	key text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
	fingerprint text NOT NULL,
	created timestamptz NOT NULL DEFAULT now(),
	id_order bigint NOT NULL,
	id_event bigint NOT NULL,
	order_total numeric NOT NULL,
	placement_date bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS order_request_created ON order_request (created);

-- cqrs_place_order(client, products, quantities, request_id): place one
-- order (the order, its items at the current prices, the outbox row) and
-- return its ids, total and date.  SECURITY DEFINER, so that a role with
-- only EXECUTE on it (scripts/roles.sql: cqrs_writer) can place orders and
-- do nothing else to the tables.  Its arguments are checked as
-- order-place checks them, and a refusal names the field as order-place
-- does, with SQLSTATE 22023 (bad value), 23503 (unknown client or product),
-- 22003 (total out of range) or, for a request_id already used for
-- another order, 23505 (unique_violation) with the detail "request_id".
-- A request_id already used for the same order within the window places
-- nothing and returns the first result, with replayed true.
CREATE OR REPLACE FUNCTION cqrs_place_order(p_client int, p_products int[],
    p_quantities int[], p_request_id text DEFAULT NULL)
RETURNS TABLE (id_order bigint, id_event bigint, order_total numeric,
    placement_date bigint, replayed boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
	n int := cardinality(p_products);
	bad int;
	badq int;
	found_client boolean;
	fp text;
	r order_request%ROWTYPE;
	v_name text;
	v_email text;
	v_total numeric;
BEGIN
	IF p_client IS NULL OR p_client < 1 THEN
		RAISE EXCEPTION 'id_client: must be a positive integer'
		    USING ERRCODE = '22023';
	END IF;
	IF n IS NULL OR n = 0 OR array_ndims(p_products) <> 1 THEN
		RAISE EXCEPTION 'products: must be a non-empty array'
		    USING ERRCODE = '22023';
	END IF;
	IF n > 1000 THEN
		RAISE EXCEPTION 'products: more than 1000 entries'
		    USING ERRCODE = '22023';
	END IF;
	IF cardinality(p_quantities) IS DISTINCT FROM n OR
	    array_ndims(p_quantities) <> 1 THEN
		RAISE EXCEPTION 'products: % product ids but % quantities', n,
		    coalesce(cardinality(p_quantities), 0)
		    USING ERRCODE = '22023';
	END IF;
	-- One pass over both arrays: the first bad id, the first bad quantity.
	SELECT min(a.i) FILTER (WHERE a.pid IS NULL OR a.pid < 1),
	    min(a.i) FILTER (WHERE a.q IS NULL OR a.q < 1 OR a.q > 1000000)
	    INTO bad, badq
	    FROM unnest(p_products, p_quantities) WITH ORDINALITY AS a(pid, q, i);
	IF bad IS NOT NULL AND (badq IS NULL OR bad <= badq) THEN
		RAISE EXCEPTION 'products[%].id_product: must be a positive integer',
		    bad - 1 USING ERRCODE = '22023';
	END IF;
	IF badq IS NOT NULL THEN
		RAISE EXCEPTION 'products[%].quantity: must be an integer from 1 to 1000000',
		    badq - 1 USING ERRCODE = '22023';
	END IF;
	IF p_request_id IS NOT NULL AND (length(p_request_id) NOT BETWEEN 1 AND 255
	    OR p_request_id !~ '^[\x21-\x7e]+$') THEN
		RAISE EXCEPTION 'request_id: must be 1 to 255 printable ASCII characters'
		    USING ERRCODE = '22023';
	END IF;

	IF p_request_id IS NOT NULL THEN
		fp := p_client || ':' || p_products::text || ':' || p_quantities::text;
		-- Taken first: a concurrent first use of the same key waits
		-- here until that order commits (then sees its row) or aborts.
		INSERT INTO order_request AS q (key, fingerprint, id_order,
		    id_event, order_total, placement_date)
		    VALUES (p_request_id, fp, 0, 0, 0, 0)
		    ON CONFLICT (key) DO NOTHING;
		IF NOT FOUND THEN
			SELECT * INTO r FROM order_request WHERE key = p_request_id
			    FOR UPDATE;
			IF r.created >= now() - interval '24 hours' THEN
				IF r.fingerprint <> fp THEN
					RAISE EXCEPTION 'request_id: % was used for another order',
					    p_request_id USING ERRCODE = '23505',
					    DETAIL = 'request_id';
				END IF;
				id_order := r.id_order;
				id_event := r.id_event;
				order_total := r.order_total;
				placement_date := r.placement_date;
				replayed := true;
				RETURN NEXT;
				RETURN;
			END IF;
			-- Expired: the key is free again.
			UPDATE order_request SET fingerprint = fp, created = now()
			    WHERE key = p_request_id;
		END IF;
	END IF;

	-- The client, the first unknown product and the total, in one query.
	SELECT c.name, c.email, c.id IS NOT NULL, x.bad, x.total
	    INTO v_name, v_email, found_client, bad, v_total
	    FROM (SELECT min(a.i) FILTER (WHERE p.id IS NULL) AS bad,
	        sum(p.price * a.q) AS total
	        FROM unnest(p_products, p_quantities) WITH ORDINALITY AS a(pid, q, i)
	        LEFT JOIN product p ON p.id = a.pid) AS x
	    LEFT JOIN client c ON c.id = p_client;
	IF NOT found_client THEN
		RAISE EXCEPTION 'id_client: unknown client %', p_client
		    USING ERRCODE = '23503';
	END IF;
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'products[%].id_product: unknown product %', bad - 1,
		    p_products[bad] USING ERRCODE = '23503';
	END IF;
	IF v_total >= 1e12 THEN
		RAISE EXCEPTION 'order_total: out of range' USING ERRCODE = '22003';
	END IF;

	placement_date := floor(extract(epoch FROM statement_timestamp()))::bigint;
	-- One statement: the items and the total see the same prices.
	WITH x AS (SELECT a.pid, a.q, a.i, p.price
	    FROM unnest(p_products, p_quantities) WITH ORDINALITY AS a(pid, q, i)
	    JOIN product p ON p.id = a.pid),
	o AS (INSERT INTO "order" (id_client, placement_date)
	    VALUES (p_client, cqrs_place_order.placement_date) RETURNING id),
	it AS (INSERT INTO order_item (id_order, id_product,
	    price_when_item_was_ordered, quantity)
	    SELECT o.id, x.pid, x.price, x.q FROM o, x ORDER BY x.i),
	e AS (INSERT INTO order_event (id_client, name, email, order_total,
	    event_date)
	    SELECT p_client, v_name, v_email, (SELECT sum(x.price * x.q) FROM x),
	        cqrs_place_order.placement_date
	    RETURNING id, order_total)
	SELECT o.id, e.id, e.order_total INTO id_order, id_event, order_total
	    FROM o, e;
	replayed := false;

	IF p_request_id IS NOT NULL THEN
		UPDATE order_request SET id_order = cqrs_place_order.id_order,
		    id_event = cqrs_place_order.id_event,
		    order_total = cqrs_place_order.order_total,
		    placement_date = cqrs_place_order.placement_date
		    WHERE key = p_request_id;
		-- A few expired keys go with each new one: the table stays
		-- bounded by the window without a cleaning job.
		DELETE FROM order_request WHERE key IN (SELECT q.key FROM order_request q
		    WHERE q.created < now() - interval '24 hours' ORDER BY q.created LIMIT 2);
	END IF;
	RETURN NEXT;
END
$fn$;

-- Nobody but the owner and the roles that scripts/roles.sql names.
REVOKE ALL ON FUNCTION cqrs_place_order(int, int[], int[], text) FROM PUBLIC;
