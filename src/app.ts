/**
 * The running service built from a configuration: the authorizer and the gRPC
 * server, and the order in which they stop.
 */
import { Authorizer, type AuthorizerOptions } from './authorizer.js';
import type { Config } from './config/load.js';
import type { Logger } from './observability/logger.js';
import { startGrpcServer, type GrpcServer } from './server/grpc-server.js';

export interface App {
  readonly config: Config;
  readonly grpc: GrpcServer;
  readonly authorizer: Authorizer;
  /** Graceful stop: NOT_SERVING, drain within server.shutdownTimeout, close endpoint connections. */
  stop(): Promise<void>;
}

export async function startApp(config: Config, logger: Logger, options: AuthorizerOptions = {}): Promise<App> {
  const authorizer = new Authorizer(config, options);
  let grpc: GrpcServer;
  try {
    grpc = await startGrpcServer(config.server.grpc.host, config.server.grpc.port, {
      authorizer: () => authorizer,
      logger,
    });
  } catch (error) {
    await authorizer.close();
    throw error;
  }
  let stopping: Promise<void> | undefined;
  return {
    config,
    grpc,
    authorizer,
    stop(): Promise<void> {
      stopping ??= (async () => {
        await grpc.shutdown(config.server.shutdownTimeout);
        await authorizer.close();
      })();
      return stopping;
    },
  };
}
