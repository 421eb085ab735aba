/*
 * CLibPQ: the libpq 15 client library (Debian 12: libpq-dev, header under postgresql/) for the
 * PQ module. libpq has no variadic functions that PQ needs, so this target is mostly the header;
 * the few wrappers below exist for things Swift cannot import or should not do itself.
 */
#ifndef CLIBPQ_H
#define CLIBPQ_H

#include <postgresql/libpq-fe.h>

/*
 * PG_DIAG_* field codes for PQresultErrorField are character-literal macros ('C', 'M', ...).
 * Swift's importer does not reliably bring character-literal macros in as integers, so they are
 * restated here as enum constants, which it imports as plain Int32 values.
 */
enum {
    CPQ_DIAG_SQLSTATE = PG_DIAG_SQLSTATE,
    CPQ_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY,
    CPQ_DIAG_CONSTRAINT_NAME = PG_DIAG_CONSTRAINT_NAME,
    CPQ_DIAG_TABLE_NAME = PG_DIAG_TABLE_NAME,
    CPQ_DIAG_COLUMN_NAME = PG_DIAG_COLUMN_NAME,
};

/*
 * PQ_QUERY_PARAM_MAX_LIMIT: the protocol's limit on bind parameters (65535), a macro in
 * libpq-fe.h restated as an enum constant so Swift can check it before calling PQexecParams.
 */
enum { CPQ_QUERY_PARAM_MAX_LIMIT = PQ_QUERY_PARAM_MAX_LIMIT };

/*
 * libpq's default notice processor prints every server NOTICE/WARNING (and the FATAL a server
 * sends to idle connections when it shuts down) to the process's stderr, which for a daemon is
 * the journal. This installs a C notice processor that drops them, so no Swift code ever runs on
 * libpq's stack from a callback and there is no isolation to get wrong. Errors still arrive
 * through PGresult, which is where PQ reads them.
 */
void cpq_discard_notices(PGconn *conn);

#endif
