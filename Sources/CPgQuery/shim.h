// libpg_query from Debian's libpg-query-dev (the PostgreSQL 15 parser as a library).
#include <pg_query.h>
