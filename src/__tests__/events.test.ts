/**
 * The events stream of the API layer (src/events.ts): parsing and reconnecting. The sockets are
 * stand-ins for the browser's WebSocket (node has none), driven by hand like a server would.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventSocket, EventStream, parseEnvelope } from '../events';
import type { IEventEnvelope } from '../types';
import * as wire from './wire.golden';

/** The handlers EventStream installs, callable from the test. */
class ServerSide {
  onopen: ((event: unknown) => void) | null = null;
  onclose: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  closed = false;
  close(): void {
    this.closed = true;
    this.onclose?.({});
  }
}

function streamWithSockets(delays: number[] = [0]): { stream: EventStream; sockets: ServerSide[] } {
  const sockets: ServerSide[] = [];
  const open = () => {
    sockets.push(new ServerSide());
    return sockets[sockets.length - 1] as unknown as EventSocket;
  };
  return { stream: new EventStream(open, delays), sockets };
}

const tick = (ms = 5) => new Promise(resolve => setTimeout(resolve, ms));

describe('parseEnvelope', () => {
  test('a server envelope parses as it was sent', () => {
    assert.deepEqual(parseEnvelope(JSON.stringify(wire.envelope)), wire.envelope);
  });

  test('anything else is dropped', () => {
    for (const data of ['not json', '{}', '{"event": {}}', 'null', new ArrayBuffer(2)]) {
      assert.equal(parseEnvelope(data), null, String(data));
    }
  });
});

describe('EventStream', () => {
  test('emits each envelope of the open socket', () => {
    const { stream, sockets } = streamWithSockets();
    const received: IEventEnvelope[] = [];
    stream.received.connect((_, envelope) => received.push(envelope));
    sockets[0].onopen?.({});
    sockets[0].onmessage?.({ data: JSON.stringify(wire.envelope) });
    sockets[0].onmessage?.({ data: 'garbage' });
    assert.deepEqual(received, [wire.envelope]);
    stream.dispose();
  });

  test('reconnects after a drop and says so once the new socket is open', async () => {
    const { stream, sockets } = streamWithSockets();
    let reconnects = 0;
    stream.reconnected.connect(() => (reconnects += 1));
    sockets[0].onopen?.({});
    assert.equal(reconnects, 0, 'the first open is not a reconnect');
    sockets[0].onclose?.({});
    await tick();
    assert.equal(sockets.length, 2);
    sockets[1].onopen?.({});
    assert.equal(reconnects, 1);
    stream.dispose();
  });

  test('keeps trying with the configured backoff while the server is down', async () => {
    const { stream, sockets } = streamWithSockets([0, 30]);
    sockets[0].onclose?.({});
    await tick();
    assert.equal(sockets.length, 2, 'first retry after 0 ms');
    sockets[1].onclose?.({});
    await tick();
    assert.equal(sockets.length, 2, 'second retry waits 30 ms');
    await tick(40);
    assert.equal(sockets.length, 3);
    stream.dispose();
  });

  test('dispose closes the socket and never reconnects', async () => {
    const { stream, sockets } = streamWithSockets();
    stream.dispose();
    assert.ok(sockets[0].closed);
    await tick();
    assert.equal(sockets.length, 1);
    assert.ok(stream.isDisposed);
  });
});
