#!/usr/bin/env node
/**
 * Process wiring: command line, configuration, servers, signals.
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { startApp, type App } from './app.js';
import { ConfigError, loadConfigFile } from './config/load.js';
import { createLogger } from './observability/logger.js';
import { VERSION } from './version.js';

const USAGE = `Usage: introspection-authz [--config FILE]

Envoy ext_authz (gRPC v3) service that authorizes bearer tokens by RFC 7662 introspection.

Options:
  -c, --config FILE   configuration file (YAML); default: $CONFIG_FILE
  -v, --version       print the version and exit
  -h, --help          print this help and exit

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure, 2 configuration error
(including a port that is already in use).`;

const EXIT_RUNTIME = 1;
const EXIT_CONFIG = 2;

async function main(argv: string[]): Promise<void> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(EXIT_CONFIG);
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.values.version) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const path = args.values.config ?? process.env.CONFIG_FILE;
  if (!path) {
    process.stderr.write(`error: no configuration file: give --config FILE or set CONFIG_FILE\n`);
    process.exit(EXIT_CONFIG);
  }

  let config;
  try {
    config = loadConfigFile(path);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`error: ${error.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }

  const logger = createLogger(config.log.level);
  // grpc-js writes its own diagnostics to stderr; route them into our JSON log.
  grpc.setLogger({
    error: (...args: unknown[]) => logger.warn({ component: 'grpc-js' }, args.map(String).join(' ')),
    info: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, args.map(String).join(' ')),
    debug: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, args.map(String).join(' ')),
  });

  // Signals are taken from here on: one arriving during start-up stops the service once it is up.
  let app: App | undefined;
  let signalled = false;
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting at once');
      logger.flush();
      process.exit(EXIT_RUNTIME);
    }
    signalled = true;
    if (app) drain(app, signal);
  };
  const drain = (running: App, signal: NodeJS.Signals) => {
    logger.info({ signal, timeoutMs: config.server.shutdownTimeout }, 'draining');
    running
      .stop()
      .then(() => {
        logger.info('stopped');
        logger.flush(() => process.exit(0));
      })
      .catch((error: unknown) => {
        logger.error({ err: (error as Error).message }, 'shutdown failed');
        logger.flush(() => process.exit(EXIT_RUNTIME));
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  try {
    app = await startApp(config, logger);
  } catch (error) {
    const e = error as Error;
    const inUse = /EADDRINUSE|address already in use/i.test(e.message);
    process.stderr.write(
      inUse
        ? `error: server.grpc.port: ${config.server.grpc.host}:${config.server.grpc.port} is already in use\n`
        : `error: cannot start: ${e.message}\n`,
    );
    logger.flush(() => process.exit(inUse ? EXIT_CONFIG : EXIT_RUNTIME));
    return;
  }
  logger.info({ version: VERSION, grpcPort: app.grpc.port, policies: config.policies.map((p) => p.name) }, 'serving');
  if (signalled) drain(app, 'SIGTERM');
}

process.on('uncaughtException', (error) => {
  process.stderr.write(`fatal: ${error.name}: ${error.message}\n`);
  process.exit(EXIT_RUNTIME);
});

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`fatal: ${(error as Error).message}\n`);
  process.exit(EXIT_RUNTIME);
});
