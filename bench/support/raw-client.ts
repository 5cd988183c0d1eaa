/**
 * Clients that send pre-encoded CheckRequests, so a Node client loop spends
 * its time on the service rather than on protobuf encoding: one through
 * grpc-js (identity serializers), and a leaner one speaking gRPC over
 * node:http2 directly, for loops where grpc-js's own CPU cost would cap the
 * figure on a small machine. Also a request template that puts a new token of
 * the same length into the encoded bytes (the lengths around it do not change).
 */
import { connect, constants } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { summarize, upstreamDefinitions, type UpstreamCheckResponse } from '../../test/support/envoy.js';
import { CHECK_PATH, encodeCheckRequest, grpcFrame, TOKEN_LENGTH } from '../check-request.js';

const identity = (bytes: Buffer): Buffer => bytes;

export interface RawClient {
  /** One Check; resolves with the encoded CheckResponse. */
  check(request: Buffer, timeoutMs?: number): Promise<Buffer>;
  close(): void;
}

export function rawClient(address: string): RawClient {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    // One HTTP/2 connection per client object, as Envoy keeps per worker.
    'grpc.use_local_subchannel_pool': 1,
  });
  return {
    check(request, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(CHECK_PATH, identity, identity, request, { deadline: Date.now() + timeoutMs }, (error, response) =>
          error ? reject(error) : resolve(response!),
        );
      });
    },
    close: () => client.close(),
  };
}

/** gRPC unary calls over one HTTP/2 connection, with node:http2 alone. Rejects unless grpc-status is 0. */
export function http2Client(address: string): RawClient {
  const session = connect(`http://${address}`);
  // A failed session fails its streams, which reject their calls.
  session.on('error', () => {});
  return {
    check(request, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': CHECK_PATH,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${timeoutMs}m`,
        });
        const chunks: Buffer[] = [];
        let status: string | undefined;
        // A trailers-only answer carries grpc-status in the headers.
        stream.on('response', (headers) => {
          if (headers['grpc-status'] !== undefined) status = String(headers['grpc-status']);
        });
        stream.on('trailers', (trailers) => {
          status = String(trailers['grpc-status']);
        });
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          const body = Buffer.concat(chunks);
          if (status !== '0') reject(new Error(`grpc-status ${status ?? 'missing'}`));
          else if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) reject(new Error('not one gRPC message'));
          else resolve(body.subarray(5));
        });
        stream.on('error', reject);
        stream.setTimeout(timeoutMs, () => stream.close(constants.NGHTTP2_CANCEL));
        stream.end(grpcFrame(request));
      });
    },
    close: () => session.close(),
  };
}

/**
 * Whether an encoded CheckResponse is an allow, from its top-level fields
 * alone: an ok_response (field 3), no denied_response (field 2), and a
 * status (field 1) whose code is 0 or absent. Cheap enough for every answer
 * of a loop; decodeDecision checks fully.
 */
export function isAllow(bytes: Buffer): boolean {
  let at = 0;
  let ok = false;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = bytes[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('bad varint');
  };
  while (at < bytes.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      varint();
      continue;
    }
    if (wire !== 2) return false;
    const length = varint();
    const end = at + length;
    if (field === 2) return false;
    if (field === 3) ok = true;
    if (field === 1) {
      // google.rpc.Status: code is field 1, a varint.
      while (at < end) {
        const inner = varint();
        if (inner === 0x08) {
          if (varint() !== 0) return false;
        } else if ((inner & 7) === 2) at += varint();
        else if ((inner & 7) === 0) varint();
        else return false;
      }
    }
    at = end;
  }
  return ok;
}

let deserialize: ((bytes: Buffer) => UpstreamCheckResponse) | undefined;

/** Decode a CheckResponse with the upstream protos and flatten it (see test/support/envoy.ts summarize). */
export function decodeDecision(bytes: Buffer): ReturnType<typeof summarize> {
  deserialize ??= (upstreamDefinitions()['envoy.service.auth.v3.Authorization'] as unknown as {
    Check: { responseDeserialize(bytes: Buffer): UpstreamCheckResponse };
  }).Check.responseDeserialize;
  return summarize(deserialize(bytes));
}

/** The realistic CheckRequest's bytes with the token swapped per call. */
export class RequestTemplate {
  readonly #bytes: Buffer;
  readonly #at: number;

  constructor() {
    const placeholder = '~'.repeat(TOKEN_LENGTH);
    this.#bytes = encodeCheckRequest(placeholder);
    this.#at = this.#bytes.indexOf(placeholder);
    if (this.#at < 0 || this.#bytes.indexOf(placeholder, this.#at + 1) >= 0) throw new Error('the token is not found once in the encoded request');
  }

  withToken(token: string): Buffer {
    if (token.length !== TOKEN_LENGTH) throw new Error(`tokens must be ${TOKEN_LENGTH} characters`);
    const bytes = Buffer.from(this.#bytes);
    bytes.write(token, this.#at, 'latin1');
    return bytes;
  }
}
