/**
 * JSON-lines logging with pino. Redaction is a second line of defence: code
 * never passes tokens or secrets to the logger in the first place.
 */
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
