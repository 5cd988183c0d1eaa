/**
 * The primary of a cluster (server.workers > 1): it answers no Checks. It
 * forks the workers, which share the gRPC port through node:cluster (the
 * primary holds the listening socket and hands connections round-robin; a
 * port 0 is picked once and kept by every worker listening), and serves the
 * one ops port for them all: /metrics over every worker, /readyz ready only
 * while every worker serves, and DELETE /cache sent to every worker. Reloads
 * reach every worker or none.
 */
import cluster from 'node:cluster';
import { changedServerKeys, ListenError } from '../app.js';
import { ConfigError, type Config } from '../config/load.js';
import { aggregateMetrics, PrimaryMetrics } from '../observability/cluster-metrics.js';
import type { Logger } from '../observability/logger.js';
import type { SharedEviction } from '../introspection/introspector.js';
import type { AdminEviction } from '../server/cache-admin.js';
import { startAdminServer, startOpsServer, type OpsServer } from '../server/ops-server.js';
import type { MetricsJson, Reply, Request } from './protocol.js';
import { Supervisor, type Answer, type SupervisorOptions, type WorkerProcess } from './supervisor.js';

export interface Cluster {
  /** The configuration in force. */
  readonly config: Config;
  readonly grpc: { readonly port: number };
  /** The HTTP authorization port the workers share; null when server.http is off. */
  readonly http: { readonly port: number } | null;
  readonly ops: OpsServer;
  /** null: no admin token at start, no admin listener. */
  readonly admin: OpsServer | null;
  readonly metrics: PrimaryMetrics;
  /** Resolves if workers die faster than they may be restarted: the service should stop. */
  readonly gaveUp: Promise<Error>;
  /** Put a validated configuration in force at every worker; a ConfigError if one refuses it (then none changes). */
  reload(config: Config, text: string): Promise<string[]>;
  /** Drain every worker within server.shutdownTimeout, then close the ops server. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Forks a worker; node:cluster's by default. */
  fork?(): WorkerProcess;
  /** Restart policy (see SupervisorOptions). */
  restart?: Pick<SupervisorOptions, 'restartDelayMs' | 'maxRestartDelayMs' | 'maxRestartsPerMinute'>;
}

/** How long a worker may take to answer the primary. */
const METRICS_TIMEOUT_MS = 2000;
const REQUEST_TIMEOUT_MS = 5000;
/** What a worker gets beyond shutdownTimeout to close its connections and exit. */
const EXIT_GRACE_MS = 2000;

export async function startCluster(initial: Config, text: string, source: string, logger: Logger, options: ClusterOptions = {}): Promise<Cluster> {
  let current = { config: initial, text };
  let draining = false;
  // Every worker listens where the primary's configuration said, whatever a later reload says.
  const pin = {
    GRPC_HOST: initial.server.grpc.host,
    GRPC_PORT: String(initial.server.grpc.port),
    HTTP_HOST: initial.server.http.host,
    HTTP_PORT: String(initial.server.http.port),
  };
  const supervisor: Supervisor = new Supervisor({
    workers: initial.server.workers,
    fork: options.fork ?? (() => cluster.fork()),
    start: (slot) => ({ type: 'start', slot, text: current.text, source, pin }),
    logger,
    onRestart: () => metrics.workerRestarts.inc(),
    ...options.restart,
  });
  const metrics = new PrimaryMetrics({ serving: () => supervisor.serving() });
  // An exit without a drain (a second signal, a crash) takes the workers along.
  const killWorkers = () => supervisor.kill();
  process.on('exit', killWorkers);

  const ask = (request: Request, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Answer[]> => supervisor.broadcast(request, timeoutMs);
  /**
   * Every worker drops and remembers the eviction; the first serving one alone
   * also deletes it in Redis and publishes it, so that each replica sends it
   * once and each worker hears it once, however many workers there are.
   */
  const evict = async (request: { token: string } | { all: true }): Promise<AdminEviction> => {
    let announcer: number | null = null;
    const answers = await supervisor.broadcast((slot) => {
      const announce = announcer === null && slot.serving;
      if (announce) announcer = slot.index;
      return { type: 'evict', ...request, announce };
    }, REQUEST_TIMEOUT_MS);
    let evicted = 0;
    let shared: SharedEviction = 'none';
    for (const { slot, reply } of answers) {
      if (!reply.ok) throw new Error(`worker ${slot}: ${reply.error}`);
      const report = reply as { evicted: number; shared: SharedEviction };
      evicted += report.evicted;
      if (report.shared === 'pending' || (report.shared === 'done' && shared === 'none')) shared = report.shared;
    }
    if (current.config.redis !== null && announcer === null) throw new Error('no worker serving to send the eviction to Redis');
    return { evicted, shared };
  };

  let ops: OpsServer;
  try {
    ops = await startOpsServer(initial.server.ops.host, initial.server.ops.port, {
      limits: initial.server.ops,
      metrics: {
        registry: {
          contentType: metrics.registry.contentType,
          metrics: async () => {
            const answers = await ask({ type: 'metrics' }, METRICS_TIMEOUT_MS);
            const workers = answers
              .filter((answer): answer is { slot: number; reply: Extract<Reply, { metrics: MetricsJson }> } => 'metrics' in answer.reply)
              .map(({ slot, reply }) => ({ worker: String(slot), metrics: reply.metrics }));
            return aggregateMetrics([...workers, { worker: 'primary', metrics: await metrics.registry.getMetricsAsJSON() }]);
          },
        },
        adminEvictions: metrics.adminEvictions,
        opsConnectionsRefused: metrics.opsConnectionsRefused,
      },
      notReady: () => {
        if (draining) return 'draining';
        const serving = supervisor.serving();
        return serving === supervisor.size ? null : `${serving} of ${supervisor.size} workers serving`;
      },
      logger,
    });
  } catch (error) {
    process.off('exit', killWorkers);
    throw new ListenError('server.ops', initial.server.ops, error);
  }
  const opsServer = ops;
  let admin: OpsServer | null = null;
  if (initial.admin.token !== null) {
    try {
      admin = await startAdminServer(initial.server.admin.host, initial.server.admin.port, {
        limits: initial.server.ops,
        cacheAdmin: () => {
          const token = current.config.admin.token;
          if (token === null) return null;
          return {
            token,
            evictToken: (value) => evict({ token: value }),
            evictAll: () => evict({ all: true }),
          };
        },
        metrics,
        logger,
      });
    } catch (error) {
      process.off('exit', killWorkers);
      await opsServer.close();
      throw new ListenError('server.admin', initial.server.admin, error);
    }
  }
  const adminServer = admin;
  const closeHttp = () => Promise.all([opsServer.close(), adminServer?.close()]).then(() => {});

  let port: number;
  try {
    port = await supervisor.start();
  } catch (error) {
    process.off('exit', killWorkers);
    await closeHttp();
    throw error;
  }

  let stopping: Promise<void> | undefined;
  return {
    get config() {
      return current.config;
    },
    grpc: { port },
    http: supervisor.httpPort === null ? null : { port: supervisor.httpPort },
    ops: opsServer,
    admin: adminServer,
    metrics,
    gaveUp: supervisor.gaveUp,
    async reload(next: Config, nextText: string): Promise<string[]> {
      const prepared = await ask({ type: 'prepare', text: nextText, source });
      const refused = prepared.find((answer) => !answer.reply.ok);
      if (refused) {
        await ask({ type: 'abort' });
        throw new ConfigError(`worker ${refused.slot}: ${(refused.reply as { error: string }).error}`);
      }
      // Before the commit: a worker that starts from here on starts with the new text.
      current = { config: next, text: nextText };
      await ask({ type: 'commit' });
      logger.level = next.log.level;
      return changedServerKeys(initial, next);
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        draining = true;
        const killed = await supervisor.stop(current.config.server.shutdownTimeout + EXIT_GRACE_MS);
        if (killed > 0) logger.warn({ killed }, 'workers still running after shutdownTimeout were killed');
        process.off('exit', killWorkers);
        await closeHttp();
      })();
      return stopping;
    },
  };
}
