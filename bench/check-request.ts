/**
 * The CheckRequest every scenario sends: what Envoy builds for an ordinary
 * browser-or-SPA API call (pseudo-headers, cookies, trace headers, forwarding
 * headers, peer addresses, a ~900-character JWT-shaped bearer token), encoded
 * with the upstream Envoy protos, as test/support/envoy.ts plays Envoy.
 */
import { createHash } from 'node:crypto';
import type * as protoLoader from '@grpc/proto-loader';
import { buildCheckRequest, upstreamDefinitions } from '../test/support/envoy.js';

export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

/** Length of every bearer token the bench sends. */
export const TOKEN_LENGTH = 900;

const b64url = (text: string | Buffer) => Buffer.from(text).toString('base64url');

/**
 * A JWT-shaped token of exactly TOKEN_LENGTH characters, distinct per `seed`.
 * `inactive` tokens begin with "inactive." so the bench's fake authorization
 * server can answer them `{"active": false}`.
 */
export function bearerToken(seed: string, inactive = false): string {
  const header = b64url(JSON.stringify({ alg: 'RS256', kid: 'bench-2026-11', typ: 'at+jwt' }));
  const digest = createHash('sha256').update(seed).digest();
  // RS256 signature: 256 bytes.
  const signature = b64url(Buffer.concat(Array.from({ length: 8 }, (_, i) => createHash('sha256').update(digest).update(String(i)).digest())));
  const prefix = inactive ? 'inactive.' : '';
  const claims = {
    iss: 'https://idp.example.com/oauth2',
    sub: `user-${digest.toString('hex', 0, 6)}`,
    aud: 'https://api.example.com',
    client_id: 'web-portal',
    scope: 'openid profile orders:read orders:write',
    jti: digest.toString('base64url'),
    iat: 1_795_000_000,
    exp: 1_795_003_600,
    pad: '',
  };
  const fixed = prefix.length + header.length + 1 + 1 + signature.length;
  const emptyPayload = b64url(JSON.stringify(claims)).length;
  // Each 3 filler characters add 4 base64 characters; round down, then trim the signature's tail to fit exactly.
  claims.pad = 'x'.repeat(Math.max(0, Math.floor(((TOKEN_LENGTH - fixed - emptyPayload) * 3) / 4)));
  const token = `${prefix}${header}.${b64url(JSON.stringify(claims))}.${signature}`;
  if (token.length >= TOKEN_LENGTH) return token.slice(0, TOKEN_LENGTH);
  return `${token}${'A'.repeat(TOKEN_LENGTH - token.length)}`;
}

/**
 * Distinct tokens cheaply, for loops that need a new one per Check: a base
 * token with its last eight characters replaced by the index in base 36.
 */
export function tokenSeries(seed: string): (i: number) => string {
  const stem = bearerToken(seed).slice(0, TOKEN_LENGTH - 8);
  return (i) => `${stem}${i.toString(36).padStart(8, '0')}`;
}

/** The headers of the incoming HTTP request, beyond what buildCheckRequest adds (pseudo-headers, x-request-id, ...). */
function clientHeaders(token: string | null): Record<string, string> {
  const headers: Record<string, string> = {
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
    accept: 'application/json, text/plain, */*',
    'accept-encoding': 'gzip, deflate, br',
    'accept-language': 'en-GB,en;q=0.9,de;q=0.8',
    cookie: 'session=3f6c1d0e9b8a4c2e; _ga=GA1.2.1234567890.1700000000; theme=dark; consent=analytics%3D1%26ads%3D0',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    'x-b3-traceid': '4bf92f3577b34da6a3ce929d0e0e4736',
    'x-b3-spanid': '00f067aa0ba902b7',
    'x-b3-sampled': '1',
    'x-forwarded-for': '203.0.113.195, 10.1.2.3',
    'x-forwarded-proto': 'https',
    'x-envoy-expected-rq-timeout-ms': '15000',
  };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return headers;
}

/** The request object (upstream field names); `token` null sends no Authorization header. */
export function checkRequest(token: string | null): object {
  return buildCheckRequest({
    method: 'GET',
    host: 'api.example.com',
    path: '/api/v1/orders/42?expand=items&page=2',
    headers: clientHeaders(token),
    contextExtensions: {},
  });
}

interface CheckMethod {
  requestSerialize(value: object): Buffer;
  responseSerialize(value: object): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

function checkMethod(): CheckMethod {
  const definitions: protoLoader.PackageDefinition = upstreamDefinitions();
  const service = definitions['envoy.service.auth.v3.Authorization'] as unknown as { Check: CheckMethod };
  return service.Check;
}

/** The request's protobuf bytes. */
export function encodeCheckRequest(token: string | null): Buffer {
  return checkMethod().requestSerialize(checkRequest(token));
}

/** A gRPC length-prefixed message: compressed flag 0, 4-byte big-endian length, the message. */
export function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** An OK CheckResponse (status code 0, an empty ok_response), encoded once. */
export function okCheckResponse(): Buffer {
  return checkMethod().responseSerialize({ status: { code: 0, message: '', details: [] }, ok_response: {} });
}
