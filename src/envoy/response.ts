/**
 * Decision -> CheckResponse bytes: the one place that builds Envoy's answers,
 * written straight to the wire as the hot path's serializer. Every answer is
 * an OK RPC carrying a decision in `status`; a deny always has a non-zero
 * code, since an absent status reads as "allow".
 *
 * What allows made from one cached answer share (the headers set upstream and
 * the dynamic metadata, see CompiledPolicy.evaluations) is encoded once and
 * reused; only the headers to remove depend on the request.
 *
 * Field numbers are those of proto/ (envoy.service.auth.v3,
 * envoy.config.core.v3, google.rpc, google.protobuf.Struct).
 */
import protobuf from 'protobufjs/minimal.js';
import type { Allow, Deny, Decision, HeaderToSet, Metadata } from '../decision.js';

const { Writer } = protobuf;
type Writer = protobuf.Writer;

/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/** google.rpc.Code values used in CheckResponse.status. */
export const RpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** A field's key on the wire: its number and wire type. */
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const key = (field: number, wireType: number) => (field << 3) | wireType;

// CheckResponse
const RESPONSE_STATUS = key(1, LENGTH_DELIMITED);
const RESPONSE_DENIED = key(2, LENGTH_DELIMITED);
const RESPONSE_OK = key(3, LENGTH_DELIMITED);
const RESPONSE_DYNAMIC_METADATA = key(4, LENGTH_DELIMITED);
// google.rpc.Status
const STATUS_CODE = key(1, VARINT);
const STATUS_MESSAGE = key(2, LENGTH_DELIMITED);
// DeniedHttpResponse
const DENIED_STATUS = key(1, LENGTH_DELIMITED);
const DENIED_HEADERS = key(2, LENGTH_DELIMITED);
const DENIED_BODY = key(3, LENGTH_DELIMITED);
// envoy.type.v3.HttpStatus
const HTTP_STATUS_CODE = key(1, VARINT);
// OkHttpResponse
const OK_HEADERS = key(2, LENGTH_DELIMITED);
const OK_HEADERS_TO_REMOVE = key(5, LENGTH_DELIMITED);
// HeaderValueOption, HeaderValue, BoolValue
const OPTION_HEADER = key(1, LENGTH_DELIMITED);
const OPTION_APPEND = key(2, LENGTH_DELIMITED);
const OPTION_APPEND_ACTION = key(3, VARINT);
const HEADER_KEY = key(1, LENGTH_DELIMITED);
const HEADER_VALUE = key(2, LENGTH_DELIMITED);
const BOOL_VALUE = key(1, VARINT);
// google.protobuf.Struct, its map entries, Value, ListValue
const STRUCT_FIELDS = key(1, LENGTH_DELIMITED);
const ENTRY_KEY = key(1, LENGTH_DELIMITED);
const ENTRY_VALUE = key(2, LENGTH_DELIMITED);
const VALUE_NULL = key(1, VARINT);
const VALUE_NUMBER = key(2, FIXED64);
const VALUE_STRING = key(3, LENGTH_DELIMITED);
const VALUE_BOOL = key(4, VARINT);
const VALUE_STRUCT = key(5, LENGTH_DELIMITED);
const VALUE_LIST = key(6, LENGTH_DELIMITED);
const LIST_VALUES = key(1, LENGTH_DELIMITED);

export function encodeCheckResponse(decision: Decision): Buffer {
  return decision.allow ? encodeAllow(decision) : encodeDeny(decision);
}

function encodeAllow(decision: Allow): Buffer {
  const writer = Writer.create();
  writer.uint32(RESPONSE_STATUS).fork().uint32(STATUS_CODE).uint32(RpcCode.OK).ldelim();
  writer.uint32(RESPONSE_OK).fork();
  for (const option of headerOptions(decision.headers)) writer.uint32(OK_HEADERS).bytes(option);
  for (const name of decision.removeHeaders) writer.uint32(OK_HEADERS_TO_REMOVE).string(name);
  writer.ldelim();
  writer.uint32(RESPONSE_DYNAMIC_METADATA).bytes(metadataStruct(decision.metadata));
  return writer.finish() as Buffer;
}

function encodeDeny(decision: Deny): Buffer {
  const writer = Writer.create();
  writer
    .uint32(RESPONSE_STATUS)
    .fork()
    .uint32(STATUS_CODE)
    .uint32(rpcCodeFor(decision.status))
    .uint32(STATUS_MESSAGE)
    .string(decision.reason)
    .ldelim();
  writer.uint32(RESPONSE_DENIED).fork();
  writer.uint32(DENIED_STATUS).fork().uint32(HTTP_STATUS_CODE).uint32(decision.status).ldelim();
  writer.uint32(DENIED_HEADERS).bytes(DENY_CONTENT_TYPE);
  writer.uint32(DENIED_HEADERS).bytes(DENY_CACHE_CONTROL);
  if (decision.challenge) writer.uint32(DENIED_HEADERS).bytes(headerOption({ name: 'www-authenticate', value: decision.challenge }));
  const body = JSON.stringify({ error: decision.bearerError ?? decision.reason, error_description: decision.description });
  writer.uint32(DENIED_BODY).string(body);
  writer.ldelim();
  return writer.finish() as Buffer;
}

/**
 * Both `append: false` and `append_action: OVERWRITE_IF_EXISTS_OR_ADD`: Envoy
 * versions differ in which one they read, and either alone lets some version
 * add our value beside a client-sent copy.
 */
function headerOption({ name, value }: HeaderToSet): Uint8Array {
  const writer = Writer.create();
  writer.uint32(OPTION_HEADER).fork().uint32(HEADER_KEY).string(name).uint32(HEADER_VALUE).string(value).ldelim();
  writer.uint32(OPTION_APPEND).fork().uint32(BOOL_VALUE).bool(false).ldelim();
  writer.uint32(OPTION_APPEND_ACTION).uint32(OVERWRITE_IF_EXISTS_OR_ADD);
  return writer.finish();
}

const DENY_CONTENT_TYPE = headerOption({ name: 'content-type', value: 'application/json' });
const DENY_CACHE_CONTROL = headerOption({ name: 'cache-control', value: 'no-store' });

/** Encoded once per headers list: allows made from the same cached answer share it. */
const encodedOptions = new WeakMap<readonly HeaderToSet[], readonly Uint8Array[]>();

function headerOptions(headers: readonly HeaderToSet[]): readonly Uint8Array[] {
  let options = encodedOptions.get(headers);
  if (options === undefined) {
    options = headers.map(headerOption);
    encodedOptions.set(headers, options);
  }
  return options;
}

/** Encoded once per metadata object, which allows made from the same cached answer share. */
const structs = new WeakMap<Metadata, Uint8Array>();

/**
 * How deep a message may sit in the answer, CheckResponse being level 0.
 * Protobuf's C++ parser (Envoy's) refuses messages nested deeper than 100; a
 * few levels are kept in hand. A value whose contents would go deeper is sent
 * as null: JSON nests three messages a level (Struct, entry, Value).
 */
const MAX_VALUE_LEVEL = 96;

function metadataStruct(metadata: Metadata): Uint8Array {
  let struct = structs.get(metadata);
  if (struct === undefined) {
    const writer = Writer.create();
    // dynamic_metadata is level 1.
    writeStructFields(writer, metadata, 1);
    struct = writer.finish();
    structs.set(metadata, struct);
  }
  return struct;
}

/** Values JSON cannot hold (undefined, functions, non-finite numbers) are left out of a struct. */
function writeStructFields(writer: Writer, object: object, structLevel: number): void {
  for (const name of Object.keys(object)) {
    const value = (object as Record<string, unknown>)[name];
    if (!representable(value)) continue;
    writer.uint32(STRUCT_FIELDS).fork().uint32(ENTRY_KEY).string(name).uint32(ENTRY_VALUE).fork();
    writeValue(writer, value, structLevel + 2);
    writer.ldelim().ldelim();
  }
}

function representable(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'object':
      return true;
    case 'number':
      return Number.isFinite(value);
    default:
      return false;
  }
}

/** A JSON value as google.protobuf.Value's fields; in a list, what JSON cannot hold becomes null. */
function writeValue(writer: Writer, value: unknown, level: number): void {
  switch (typeof value) {
    case 'string':
      writer.uint32(VALUE_STRING).string(value);
      return;
    case 'number':
      if (Number.isFinite(value)) writer.uint32(VALUE_NUMBER).double(value);
      else writer.uint32(VALUE_NULL).uint32(0);
      return;
    case 'boolean':
      writer.uint32(VALUE_BOOL).bool(value);
      return;
    case 'object':
      if (value === null || level + 3 > MAX_VALUE_LEVEL) {
        writer.uint32(VALUE_NULL).uint32(0);
      } else if (Array.isArray(value)) {
        writer.uint32(VALUE_LIST).fork();
        for (const item of value) {
          writer.uint32(LIST_VALUES).fork();
          writeValue(writer, item, level + 2);
          writer.ldelim();
        }
        writer.ldelim();
      } else {
        writer.uint32(VALUE_STRUCT).fork();
        writeStructFields(writer, value, level + 1);
        writer.ldelim();
      }
      return;
    default:
      writer.uint32(VALUE_NULL).uint32(0);
  }
}

function rpcCodeFor(httpStatus: number): number {
  if (httpStatus === 401) return RpcCode.UNAUTHENTICATED;
  if (httpStatus === 403) return RpcCode.PERMISSION_DENIED;
  if (httpStatus === 503 || httpStatus === 502 || httpStatus === 504) return RpcCode.UNAVAILABLE;
  if (httpStatus >= 500) return RpcCode.INTERNAL;
  if (httpStatus === 400) return RpcCode.INVALID_ARGUMENT;
  return RpcCode.PERMISSION_DENIED;
}
