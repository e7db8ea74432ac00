/* kfk: Kafka through librdkafka: kafka:// names and properties; the producer behind pub_kfk_open() and the consumer group behind sub_kfk_open(). */
#ifndef CQRS_KFK_H
#define CQRS_KFK_H

#define KFK_DEFAULT_GROUP	"event-consume"

/* A librdkafka property as given: -X key=value, or -F FILE of them. */
struct kfk_prop {
	int		 file;
	const char	*arg;
};

int	kfk_url_parse(const char *, char **, char **);

#endif
