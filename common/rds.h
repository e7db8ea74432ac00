/* rds: Redis connections through hiredis, from REDIS_URL or a flag. */
#ifndef CQRS_RDS_H
#define CQRS_RDS_H

#include <hiredis/hiredis.h>

#define RDS_DEFAULT_URL	"redis://127.0.0.1:6379/0"

redisContext	*rds_connect(const char *, const char *, int *);
int		 rds_exit_code(const redisContext *, const redisReply *);
int		 rds_command(redisContext *, redisReply **, const char *, ...);

#endif
