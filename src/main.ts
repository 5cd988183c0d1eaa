#!/usr/bin/env node
/**
 * Process wiring: command line, configuration, servers, signals, reloads.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { ListenError, startApp, type App } from './app.js';
import { ConfigError, loadConfigFile, type Config } from './config/load.js';
import { watchConfigFile } from './config/watch.js';
import { createLogger, type Logger } from './observability/logger.js';
import { VERSION } from './version.js';

const USAGE = `Usage:
  introspection-authz [--config FILE]      run the service
  introspection-authz check-config FILE    validate FILE, print it resolved (secrets masked)

Envoy ext_authz (gRPC v3) service that authorizes bearer tokens by RFC 7662 introspection.

Options:
  -c, --config FILE   configuration file (YAML); default: $CONFIG_FILE
  -v, --version       print the version and exit
  -h, --help          print this help and exit

The configuration is reloaded on SIGHUP and when the file changes.
Exit codes: 0 stopped by SIGTERM/SIGINT (or check-config passed), 1 runtime failure,
2 configuration error (including a port that is already in use).`;

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
      allowPositionals: true,
    });
  } catch (error) {
    fail(`${(error as Error).message}\n${USAGE}`, EXIT_CONFIG);
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.values.version) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const [command, ...rest] = args.positionals;
  if (command === 'check-config') {
    if (rest.length > 1) fail(`check-config takes one file\n${USAGE}`, EXIT_CONFIG);
    checkConfig(rest[0] ?? args.values.config ?? process.env.CONFIG_FILE);
    return;
  }
  if (command !== undefined) fail(`unknown command "${command}"\n${USAGE}`, EXIT_CONFIG);
  await serve(args.values.config ?? process.env.CONFIG_FILE);
}

function fail(message: string, code: number): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

function load(path: string | undefined): Config {
  if (!path) fail('no configuration file: give --config FILE or set CONFIG_FILE', EXIT_CONFIG);
  try {
    return loadConfigFile(path);
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, EXIT_CONFIG);
    throw error;
  }
}

/** Print the configuration as the service sees it: defaults filled in, secrets masked. */
function checkConfig(path: string | undefined): void {
  const config = load(path);
  process.stdout.write(`${JSON.stringify(config, printable, 2)}\n`);
}

/** JSON replacer: compiled templates print as their source; Secret prints itself as [redacted]. */
function printable(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && 'source' in value && 'parts' in value) return (value as { source: unknown }).source;
  return value;
}

function digest(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

async function serve(path: string | undefined): Promise<void> {
  // SIGHUP's default action ends the process, so it is taken before anything
  // else; one that arrives before the service is up is acted on once it is.
  let hangupPending = false;
  let reload: (trigger: string) => void = () => {
    hangupPending = true;
  };
  process.on('SIGHUP', () => reload('SIGHUP'));
  // Taken before the file is read: a change made while loading or starting up
  // then differs from it, and is reloaded once the file is watched.
  const initialDigest = path ? digest(path) : null;
  const config = load(path);
  const configPath = path!;
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
  let unwatch = () => {};
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
    unwatch();
    logger.info({ signal, timeoutMs: running.config.server.shutdownTimeout }, 'draining');
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
    const listen = error instanceof ListenError;
    process.stderr.write(`error: ${listen ? error.message : `cannot start: ${(error as Error).message}`}\n`);
    logger.flush(() => process.exit(listen && error.inUse ? EXIT_CONFIG : EXIT_RUNTIME));
    return;
  }
  logger.info(
    {
      version: VERSION,
      grpcPort: app.grpc.port,
      opsPort: app.ops.port,
      policies: config.policies.map((p) => p.name),
    },
    'serving',
  );
  if (signalled) {
    drain(app, 'SIGTERM');
    return;
  }

  const running = app;
  let loaded = initialDigest;
  reload = (trigger: string) => {
    if (signalled) return;
    const current = digest(configPath);
    if (trigger === 'file' && current === loaded) return;
    reloadFrom(running, configPath, trigger, logger);
    loaded = current;
  };
  unwatch = watchConfigFile(configPath, () => reload('file'));
  // Nothing watched the file until now: catch up on a SIGHUP or a change since it was read.
  reload(hangupPending ? 'SIGHUP' : 'file');
}

/** Validate the file in full, then swap; an invalid file changes nothing. */
function reloadFrom(app: App, path: string, trigger: string, logger: Logger): void {
  let next: Config;
  try {
    next = loadConfigFile(path);
  } catch (error) {
    app.metrics.configReloads.inc({ result: 'failure' });
    const message = error instanceof ConfigError ? error.message : `${(error as Error).name}: ${(error as Error).message}`;
    logger.error({ trigger, err: message }, 'configuration rejected; the previous one stays in force');
    return;
  }
  const restartNeeded = app.reload(next);
  app.metrics.configReloads.inc({ result: 'success' });
  logger.info({ trigger, policies: next.policies.map((p) => p.name) }, 'configuration reloaded');
  if (restartNeeded.length > 0) {
    logger.warn({ keys: restartNeeded }, 'these settings take effect only after a restart');
  }
}

process.on('uncaughtException', (error) => {
  process.stderr.write(`fatal: ${error.name}: ${error.message}\n`);
  process.exit(EXIT_RUNTIME);
});

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`fatal: ${(error as Error).message}\n`);
  process.exit(EXIT_RUNTIME);
});
