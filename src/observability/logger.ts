/**
 * JSON-lines logging with pino. Redaction is a second line of defence: code
 * never passes tokens or secrets to the logger in the first place.
 */
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

const REDACT = [
  'token',
  'authorization',
  'clientSecret',
  'authorizationValue',
  '*.token',
  '*.authorization',
  '*.clientSecret',
  '*.authorizationValue',
  'headers.authorization',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'introspection-authz' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // minLength 1 still writes every line at once; it makes flush(cb) wait for
    // the writes in flight (with 0 it calls back at once, and the exit that
    // follows writes the buffered lines synchronously ahead of them: "stopped"
    // landed before "draining").
    destination ?? pino.destination({ fd: 1, sync: false, minLength: 1 }),
  );
}

/**
 * grpc-js writes its own diagnostics to stderr; route them into our JSON log.
 * Until `listening()` its errors are debug lines: what goes wrong then is a
 * failed bind, which the caller reports itself as one ListenError line.
 */
export function routeGrpcLogs(logger: Logger): { listening(): void } {
  let listening = false;
  grpc.setLogger({
    error: (...args: unknown[]) =>
      (listening ? logger.warn : logger.debug).call(logger, { component: 'grpc-js' }, args.map(String).join(' ')),
    info: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, args.map(String).join(' ')),
    debug: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, args.map(String).join(' ')),
  });
  return {
    listening: () => {
      listening = true;
    },
  };
}
