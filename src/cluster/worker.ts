/**
 * A cluster worker: the Check service (gRPC, authorizer, cache, metrics) on
 * the port the workers share, run on the configuration text its primary
 * validated, and the answers to the primary's requests: its metrics, cache
 * evictions, and reloads in two steps (prepare: parse and hold; commit: put
 * in force), so that a configuration one worker refuses reaches none.
 *
 * It drains and exits when the primary says stop, on SIGTERM or SIGINT, and
 * when the primary is gone. Reloads come from the primary only: SIGHUP is ignored.
 */
import { ListenError, startCheckService, type CheckService } from '../app.js';
import { ConfigError, parseConfig, type Config } from '../config/load.js';
import { createLogger, routeGrpcLogs, type Logger } from '../observability/logger.js';
import { isToWorker, type FromWorker, type Reply, type Request, type Start } from './protocol.js';

export function runWorker(): void {
  let service: CheckService | null = null;
  let logger: Logger | null = null;
  let env: NodeJS.ProcessEnv = process.env;
  /** The configuration to run: the start one, then each committed one (even while still starting). */
  let config: Config | null = null;
  let prepared: Config | null = null;
  let stopping = false;

  const send = (message: FromWorker) => {
    if (process.connected) process.send!(message);
  };
  const exit = (code: number) => {
    if (logger) logger.flush(() => process.exit(code));
    else process.exit(code);
  };

  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (service === null) {
      // Not serving yet (start() exits once it is), or never started.
      if (config === null) exit(0);
      return;
    }
    logger!.info({ timeoutMs: service.config.server.shutdownTimeout }, 'worker draining');
    service.stop().then(
      () => exit(0),
      (error: unknown) => {
        logger!.error({ err: (error as Error).message }, 'worker shutdown failed');
        exit(1);
      },
    );
  };

  const start = async (message: Start) => {
    if (config !== null) return;
    env = { ...process.env, ...message.pin };
    let initial: Config;
    try {
      initial = parseConfig(message.text, message.source, { env });
    } catch (error) {
      fail(error instanceof ConfigError ? error.message : `cannot start: ${(error as Error).message}`, 2);
      return;
    }
    config = initial;
    logger = createLogger(initial.log.level).child({ worker: message.slot, pid: process.pid });
    const grpcLogs = routeGrpcLogs(logger);
    try {
      service = await startCheckService(initial, logger);
      grpcLogs.listening();
    } catch (error) {
      if (error instanceof ListenError) fail(error.message, error.inUse ? 2 : 1);
      else fail(`cannot start: ${(error as Error).message}`, 1);
      return;
    }
    // A reload committed while the service was starting.
    if (config !== initial) service.reload(config);
    if (stopping) {
      stopping = false;
      stop();
      return;
    }
    const httpPort = service.http?.port ?? null;
    send({ type: 'serving', port: service.grpc.port, httpPort });
    logger.info({ grpcPort: service.grpc.port, ...(httpPort === null ? {} : { httpPort }) }, 'worker serving');
  };

  /** Tell the primary (which writes the line to stderr while the service starts, or logs it later) and exit. */
  const fail = (message: string, exitCode: number) => {
    send({ type: 'failed', message, exitCode });
    exit(exitCode);
  };

  const handle = async (request: Request): Promise<Reply> => {
    switch (request.type) {
      case 'metrics':
        return { ok: true, metrics: service ? await service.metrics.registry.getMetricsAsJSON() : [] };
      case 'evict':
        // Not serving yet: nothing has been cached.
        if (service === null) return { ok: true, evicted: 0, shared: 'none' };
        return {
          ok: true,
          ...('all' in request
            ? await service.authorizer.evictAll(request.announce)
            : await service.authorizer.evictToken(request.token, request.announce)),
        };
      case 'prepare':
        try {
          prepared = parseConfig(request.text, request.source, { env });
          return { ok: true };
        } catch (error) {
          prepared = null;
          return { ok: false, error: error instanceof ConfigError ? error.message : `${(error as Error).name}: ${(error as Error).message}` };
        }
      case 'commit':
        if (prepared !== null) {
          config = prepared;
          prepared = null;
          service?.reload(config);
        }
        return { ok: true };
      case 'abort':
        prepared = null;
        return { ok: true };
    }
  };

  process.on('message', (message: unknown) => {
    if (!isToWorker(message)) return;
    if (message.type === 'start') start(message).catch((error: Error) => fail(`cannot start: ${error.message}`, 1));
    else if (message.type === 'stop') stop();
    else {
      const { id } = message;
      handle(message.request).then(
        (reply) => send({ type: 'reply', id, reply }),
        (error: unknown) => send({ type: 'reply', id, reply: { ok: false, error: (error as Error).message } }),
      );
    }
  });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {});
  process.on('disconnect', stop);
  send({ type: 'hello' });
}
