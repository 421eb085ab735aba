#include "clibpq.h"

/* Does nothing on purpose: see cpq_discard_notices in clibpq.h. */
static void cpq_notice_sink(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

void cpq_discard_notices(PGconn *conn) {
    if (conn != NULL) {
        PQsetNoticeProcessor(conn, cpq_notice_sink, NULL);
    }
}
