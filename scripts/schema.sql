-- cqrs-pipes schema: the AWS sample's tables and columns, with stronger types and checks.

CREATE TABLE product (
	id serial PRIMARY KEY,
	name text NOT NULL,
	price numeric(12,2) NOT NULL CHECK (price >= 0)
);

CREATE TABLE client (
	id serial PRIMARY KEY,
	name text NOT NULL,
	email text NOT NULL
);

CREATE TABLE "order" (
	id bigserial PRIMARY KEY,
	id_client int NOT NULL REFERENCES client,
	placement_date bigint NOT NULL	-- Unix epoch seconds, UTC
);

CREATE TABLE order_item (
	id bigserial PRIMARY KEY,
	id_order bigint NOT NULL REFERENCES "order",
	id_product int NOT NULL REFERENCES product,
	price_when_item_was_ordered numeric(12,2) NOT NULL,
	quantity int NOT NULL CHECK (quantity > 0)
);

-- The outbox: one row per placed order, written in the order's transaction.
CREATE TABLE order_event (
	id bigserial PRIMARY KEY,
	id_client int NOT NULL REFERENCES client,
	name text NOT NULL,
	email text NOT NULL,
	order_total numeric(14,2) NOT NULL,
	event_date bigint NOT NULL	-- Unix epoch seconds, UTC
);
