/**
 * The running service built from a configuration: authorizer, gRPC server,
 * ops server and metrics; how a new configuration replaces the old one; and
 * the order in which everything stops. A cluster's worker runs the Check
 * service alone; its primary serves the ops port (src/cluster/).
 */
import { Authorizer, type AuthorizerOptions } from './authorizer.js';
import type { Config } from './config/load.js';
import type { Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { startTracing, type Tracing } from './observability/tracing.js';
import type { Runtime } from './server/authorization-service.js';
import { startGrpcServer, type GrpcServer } from './server/grpc-server.js';
import { startHttpServer, type HttpServer } from './http/server.js';
import { startAdminServer, startOpsServer, type OpsServer } from './server/ops-server.js';

/** What answers Checks: authorizer, gRPC server and metrics. A cluster's worker runs this alone. */
export interface CheckService {
  /** The configuration in force. */
  readonly config: Config;
  readonly grpc: GrpcServer;
  /** The HTTP authorization server (server.http), null when not enabled. */
  readonly http: HttpServer | null;
  readonly metrics: Metrics;
  readonly authorizer: Authorizer;
  /** True from the start of stop(). */
  readonly draining: boolean;
  /**
   * Put a new, already validated configuration in force. Checks under way
   * finish on the old one; the next Check uses the new one. Addresses, ports
   * and workers need a restart: returns the keys where `config` differs from
   * what the service was started with (shutdownTimeout takes effect at once).
   */
  reload(config: Config): string[];
  /** Graceful stop: NOT_SERVING, drain within server.shutdownTimeout, close connections. */
  stop(): Promise<void>;
}

/** The whole service in one process: the Check service, its ops server and its admin server. */
export interface App extends CheckService {
  readonly ops: OpsServer;
  /** null: no admin token at start, no admin listener. */
  readonly admin: OpsServer | null;
}

export interface AppOptions {
  clock?: AuthorizerOptions['clock'];
}

/** Longest a stop waits, past the drain, for the last spans to be exported. */
export const TRACE_FLUSH_MS = 2000;

export async function startCheckService(initial: Config, logger: Logger, options: AppOptions = {}): Promise<CheckService> {
  let config = initial;
  let authorizer: Authorizer;
  const metrics = new Metrics({
    cacheEntries: () => authorizer.cache.size,
    negativeCacheEntries: () => authorizer.cache.negativeSize,
    circuitStates: () => authorizer.circuitStates(),
    exemplars: config.tracing.enabled,
  });
  // Loaded only when on: with tracing off, not one module of the SDK is in the process.
  const tracing: Tracing | undefined = config.tracing.enabled
    ? await startTracing({ logger, onExportFailure: () => metrics.traceExportFailures.inc() })
    : undefined;
  authorizer = new Authorizer(config, { clock: options.clock, metrics, logger, tracing });
  let runtime: Runtime = { authorizer, log: config.log };
  let draining = false;

  let grpc: GrpcServer;
  try {
    grpc = await startGrpcServer(
      config.server.grpc.host,
      config.server.grpc.port,
      { runtime: () => runtime, logger, metrics, tracing },
      config.server.grpc.maxCheckRequestBytes,
    );
  } catch (error) {
    await authorizer.close();
    await tracing?.shutdown(0);
    throw new ListenError('server.grpc', config.server.grpc, error);
  }
  const grpcServer = grpc;

  let http: HttpServer | null = null;
  if (config.server.http.enabled) {
    try {
      http = await startHttpServer(config.server.http.host, config.server.http.port, {
        runtime: () => runtime,
        logger,
        metrics,
        tracing,
        limits: config.server.http,
      });
    } catch (error) {
      await grpcServer.shutdown(0);
      await authorizer.close();
      await tracing?.shutdown(0);
      throw new ListenError('server.http', config.server.http, error);
    }
  }
  const httpServer = http;

  let stopping: Promise<void> | undefined;
  return {
    get config() {
      return config;
    },
    grpc: grpcServer,
    http: httpServer,
    metrics,
    get authorizer() {
      return authorizer;
    },
    get draining() {
      return draining;
    },
    reload(next: Config): string[] {
      const previous = authorizer;
      authorizer = new Authorizer(next, { clock: options.clock, metrics, logger, previous, tracing });
      runtime = { authorizer, log: next.log };
      logger.level = next.log.level;
      // Against the addresses the servers listen on, not the last file: a reload that
      // puts a changed port back is not a restart still owed.
      const restartNeeded = changedServerKeys(initial, next);
      config = next;
      metrics.configLoadedAt.setToCurrentTime();
      previous.retire().catch(() => {});
      return restartNeeded;
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        draining = true;
        const timeout = config.server.shutdownTimeout;
        await Promise.all([grpcServer.shutdown(timeout), httpServer?.shutdown(timeout)]);
        await authorizer.close();
        await tracing?.shutdown(TRACE_FLUSH_MS);
      })();
      return stopping;
    },
  };
}

export async function startApp(initial: Config, logger: Logger, options: AppOptions = {}): Promise<App> {
  const service = await startCheckService(initial, logger, options);
  const { metrics } = service;
  let ops: OpsServer;
  try {
    ops = await startOpsServer(initial.server.ops.host, initial.server.ops.port, {
      limits: initial.server.ops,
      metrics,
      notReady: () => {
        if (service.draining) return 'draining';
        // A token of an endpoint without keys can only be refused: not ready until they are loaded.
        const missing = service.authorizer.keysMissing();
        return missing.length === 0 ? null : `keys not loaded: ${missing.join('; ')}`;
      },
      logger,
    });
  } catch (error) {
    await service.stop();
    throw new ListenError('server.ops', initial.server.ops, error);
  }
  const opsServer = ops;
  let admin: OpsServer | null = null;
  if (initial.admin.token !== null) {
    try {
      admin = await startAdminServer(initial.server.admin.host, initial.server.admin.port, {
        limits: initial.server.ops,
        // Read per request: a reload may change or remove the admin token.
        cacheAdmin: () => {
          const token = service.config.admin.token;
          if (token === null) return null;
          return { token, evictToken: (value) => service.authorizer.evictToken(value), evictAll: () => service.authorizer.evictAll() };
        },
        metrics,
        logger,
      });
    } catch (error) {
      await service.stop();
      await opsServer.close();
      throw new ListenError('server.admin', initial.server.admin, error);
    }
  }
  const adminServer = admin;

  let stopping: Promise<void> | undefined;
  return {
    get config() {
      return service.config;
    },
    grpc: service.grpc,
    http: service.http,
    ops: opsServer,
    admin: adminServer,
    metrics,
    get authorizer() {
      return service.authorizer;
    },
    get draining() {
      return service.draining;
    },
    reload: (next: Config) => service.reload(next),
    stop(): Promise<void> {
      stopping ??= service.stop().then(() => Promise.all([opsServer.close(), adminServer?.close()]).then(() => {}));
      return stopping;
    },
  };
}

/** A server could not listen; `key` names the configuration that says where. */
export class ListenError extends Error {
  readonly code = 'ERR_LISTEN';
  readonly key: string;
  readonly inUse: boolean;

  constructor(key: string, address: { host: string; port: number }, cause: unknown) {
    const message = cause instanceof Error ? cause.message : String(cause);
    const inUse = /EADDRINUSE|address already in use/i.test(message);
    super(
      inUse
        ? `${key}.port: ${address.host}:${address.port} is already in use`
        : `${key}: cannot listen on ${address.host}:${address.port}: ${message}`,
    );
    this.key = key;
    this.inUse = inUse;
  }
}

/** The keys that differ, of those that take effect only after a restart (server.*, admin.token, tracing.enabled). */
export function changedServerKeys(before: Config, after: Config): string[] {
  const keys: string[] = [];
  const a = before.server;
  const b = after.server;
  if (a.grpc.host !== b.grpc.host) keys.push('server.grpc.host');
  if (a.grpc.port !== b.grpc.port) keys.push('server.grpc.port');
  if (a.grpc.maxCheckRequestBytes !== b.grpc.maxCheckRequestBytes) keys.push('server.grpc.maxCheckRequestBytes');
  if (a.ops.host !== b.ops.host) keys.push('server.ops.host');
  if (a.ops.port !== b.ops.port) keys.push('server.ops.port');
  if (a.ops.maxConnections !== b.ops.maxConnections) keys.push('server.ops.maxConnections');
  if (a.ops.headersTimeout !== b.ops.headersTimeout) keys.push('server.ops.headersTimeout');
  if (a.admin.host !== b.admin.host) keys.push('server.admin.host');
  if (a.admin.port !== b.admin.port) keys.push('server.admin.port');
  // The admin listener starts with a token only: one set by a reload has nowhere to be served yet.
  if (before.admin.token === null && after.admin.token !== null) keys.push('admin.token');
  for (const key of ['enabled', 'host', 'port', 'decisionTimeout', 'maxConnections', 'headersTimeout', 'maxHeaderBytes'] as const) {
    if (a.http[key] !== b.http[key]) keys.push(`server.http.${key}`);
  }
  if (a.workers !== b.workers) keys.push('server.workers');
  if (before.tracing.enabled !== after.tracing.enabled) keys.push('tracing.enabled');
  return keys;
}
