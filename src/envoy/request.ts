/**
 * CheckRequest -> AuthRequest. Envoy sends headers either merged in
 * `headers` (repeated lines joined with ",") or, with encode_raw_headers,
 * unmerged in `header_map` with raw byte values; both are read here.
 */
import type { AuthRequest } from '../auth-request.js';
import type { CheckRequest } from './protos.js';

const EMPTY_EXTENSIONS: ReadonlyMap<string, string> = new Map();

export function toAuthRequest(check: CheckRequest): AuthRequest {
  const attributes = check.attributes;
  const http = attributes?.request?.http;
  const headers = new Map<string, string[]>();

  const raw = http?.header_map?.headers;
  if (raw && raw.length > 0) {
    for (const entry of raw) {
      if (!entry.key) continue;
      const value = entry.raw_value && entry.raw_value.length > 0 ? entry.raw_value.toString('utf8') : (entry.value ?? '');
      add(headers, entry.key.toLowerCase(), value);
    }
  } else if (http?.headers) {
    for (const key of Object.keys(http.headers)) add(headers, key.toLowerCase(), http.headers[key]!);
  }

  const extensions = attributes?.context_extensions;
  const contextExtensions = extensions && Object.keys(extensions).length > 0 ? new Map(Object.entries(extensions)) : EMPTY_EXTENSIONS;

  return {
    headers,
    contextExtensions,
    method: http?.method || first(headers, ':method') || '',
    host: http?.host || first(headers, ':authority') || first(headers, 'host') || '',
    path: http?.path || first(headers, ':path') || '',
    requestId: first(headers, 'x-request-id') ?? null,
  };
}

function add(headers: Map<string, string[]>, key: string, value: string): void {
  const list = headers.get(key);
  if (list) list.push(value);
  else headers.set(key, [value]);
}

function first(headers: Map<string, string[]>, key: string): string | undefined {
  return headers.get(key)?.[0];
}
