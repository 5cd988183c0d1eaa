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
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** grpc-js writes its own diagnostics to stderr; route them into our JSON log. */
export function routeGrpcLogs(logger: Logger): void {
  grpc.setLogger({
    error: (...args: unknown[]) => logger.warn({ component: 'grpc-js' }, args.map(String).join(' ')),
    info: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, args.map(String).join(' ')),
    debug: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, args.map(String).join(' ')),
  });
}
