-- cqrs-pipes seed data: the AWS sample's products and clients.

INSERT INTO product (id, name, price) VALUES
	(1, 'Computer', 1500),
	(2, 'Phone', 500),
	(3, 'TV', 1000);

INSERT INTO client (id, name, email) VALUES
	(1, 'Bob', 'bob@anemailprovider.com'),
	(2, 'Alice', 'alice@anemailprovider.com'),
	(3, 'John', 'john@anemailprovider.com');

-- The ids above were explicit: move the sequences past them.
SELECT setval(pg_get_serial_sequence('product', 'id'), (SELECT max(id) FROM product));
SELECT setval(pg_get_serial_sequence('client', 'id'), (SELECT max(id) FROM client));
