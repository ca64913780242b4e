/* lmdb_holder.c - a child holding LMDB's writer lock (lmdb_holder.h). */
#include "lmdb_holder.h"

#include <lmdb.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t lmdb_hold_writer(const char *path, int hold_ms, int *release)
{
	int ready[2], go[2];
	char c;
	if (pipe(ready))
		return -1;
	if (pipe(go)) {
		close(ready[0]);
		close(ready[1]);
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		MDB_env *env;
		MDB_txn *w;
		close(ready[0]);
		close(go[1]);
		/* the map size only bounds this process's view: LMDB uses the
		 * file's own when it is larger */
		if (mdb_env_create(&env) || mdb_env_set_mapsize(env, (size_t)64 << 30) ||
		    mdb_env_open(env, path, MDB_NOTLS, 0644) || mdb_txn_begin(env, NULL, 0, &w))
			_exit(2);
		if (write(ready[1], "w", 1) != 1)
			_exit(3);
		struct pollfd pf = { .fd = go[0], .events = POLLIN };
		poll(&pf, 1, hold_ms);
		mdb_txn_abort(w);
		mdb_env_close(env);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	int ok = pid > 0 && read(ready[0], &c, 1) == 1;
	close(ready[0]);
	if (!ok) {
		close(go[1]);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		return -1;
	}
	*release = go[1];
	return pid;
}
