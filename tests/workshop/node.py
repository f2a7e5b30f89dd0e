#!/usr/bin/env python3
"""A node written to the workshop's description (seed 001), the way the
workshop's own Python nodes behave, for toy's interop tests.

Layers, as the workshop lays them out:
  network    frames: [len u32 BE][payload] over TCP
  messaging  [type u8][id u32 BE][kind utf-8][0x00][payload]; type 0 one-way,
             1 request, 2 response
  p2p        p2p:hello (own host:port) -> 0x01|0x00 + comma-separated peers;
             p2p:get_peers -> peers
  gossip     gossip:<kind> = id[16] | payload, seen-set, forward on success
  search     gossip:search:<kind> = gossip_id[16] | search_id[16] | query;
             search_response:<kind> = search_id[16] | answer, routed back by
             the search id
  chat       gossip kind "chat", payload host:port 0x00 text

Behaviour observed on the workshop's nodes and kept on purpose:
  * it opens --dup connections to each bootstrap address and says hello on
    each; it never closes a connection whose hello was rejected;
  * it names a peer by the remote address of the connection, so when any
    connection to that address closes, the peer is dropped;
  * it sends p2p:get_peers to every peer about once a second;
  * its peer list may include the asker itself;
  * it ignores requests of kinds it does not know (the asker times out).

With --difficulty N it also runs the workshop's chain (tests/workshop/
chain.py, which needs PyPI's `ecdsa`): bc:new_block and bc:new_tx gossip,
missing parents fetched with search:block (query: the raw 32-byte hash,
answer: the block's text), and with --mine a miner paying its own key.

Driven through stdin, one command per line:
  say <text>                chat
  search <kind> <query>     a search (query as UTF-8)
  hold <kind> <query> <answer>   answer searches for <query>
  peers                     prints "PEERS a,b,c"
  key                       prints "KEY <public key hex>"          (chain)
  send <recipient> <amount> prints "SENT <tx id>"                   (chain)
  balance <key>             prints "BALANCE <key> <coins>"          (chain)
  tip                       prints "TIP <number> <hash>"            (chain)
  mine on|off               starts or stops the miner               (chain)
Prints "LISTENING host:port", "CHAT <from> <text>", "FOUND <kind> <answer>",
"NOTFOUND <kind>", "PEERS ...".
"""

import argparse
import asyncio
import hashlib
import os
import struct
import sys

REQUEST_TIMEOUT = 5.0


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Conn:
    def __init__(self, node, reader, writer, incoming):
        self.node = node
        self.reader = reader
        self.writer = writer
        self.incoming = incoming
        host, port = writer.get_extra_info("peername")[:2]
        self.remote = f"{host}:{port}"
        self.next_id = 1
        self.pending = {}
        self.closed = False

    def send_raw(self, mtype, mid, kind, payload):
        if self.closed:
            return
        body = bytes([mtype]) + struct.pack(">I", mid) + kind.encode() + b"\x00" + payload
        self.writer.write(struct.pack(">I", len(body)) + body)

    def send(self, kind, payload):
        self.send_raw(0, 0, kind, payload)

    async def request(self, kind, payload):
        mid = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[mid] = fut
        self.send_raw(1, mid, kind, payload)
        try:
            return await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            return None
        finally:
            self.pending.pop(mid, None)

    async def run(self):
        try:
            while True:
                head = await self.reader.readexactly(4)
                (n,) = struct.unpack(">I", head)
                body = await self.reader.readexactly(n)
                mtype, mid = body[0], struct.unpack(">I", body[1:5])[0]
                zero = body.index(b"\x00", 5)
                kind = body[5:zero].decode()
                payload = body[zero + 1 :]
                if mtype == 2:
                    fut = self.pending.get(mid)
                    if fut and not fut.done():
                        fut.set_result(payload)
                    continue
                handler = self.node.handlers.get(kind)
                if handler is None:
                    continue  # unknown kinds are ignored
                asyncio.create_task(self.handle(handler, mtype, mid, payload))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self.closed = True
            self.writer.close()
            self.node.on_disconnect(self)

    async def handle(self, handler, mtype, mid, payload):
        answer = handler(self, payload)
        if asyncio.iscoroutine(answer):
            answer = await answer
        if mtype == 1 and answer is not None:
            self.send_raw(2, mid, "", answer)


class Node:
    def __init__(self, listen, bootstrap, dup, max_peers, difficulty=None):
        self.listen = listen
        self.addr = None
        self.bootstrap = bootstrap
        self.dup = dup
        self.max_peers = max_peers
        self.peers = {}  # remote address -> Conn (the workshop's keying)
        self.handlers = {}
        self.seen = set()
        self.routes = {}  # search id -> Conn
        self.searches = {}  # search id -> kind
        self.held = {}  # (kind, query) -> answer
        self.handlers["p2p:hello"] = self.on_hello
        self.chain = None
        self.mining = False
        if difficulty is not None:
            import chain

            self.chain = chain.Chain(difficulty)
            self.key = chain.new_key()
            self.pub = chain.public_hex(self.key)
            self.handlers["gossip:bc:new_block"] = self.on_gossip_block
            self.handlers["gossip:bc:new_tx"] = self.on_gossip_tx
            self.orphans = {}  # parent hash -> [block text]
            self.enable_search("block")
        self.handlers["p2p:get_peers"] = lambda conn, _: self.peer_list().encode()
        self.handlers["gossip:chat"] = self.on_gossip_chat

    def peer_list(self):
        # May include the asker itself, as the workshop's nodes do.
        return ",".join(sorted(self.peers))

    def on_hello(self, conn, payload):
        claimed = payload.decode(errors="replace")
        if len(self.peers) >= 2 * self.max_peers and claimed not in self.peers:
            return b"\x00" + self.peer_list().encode()
        self.peers[claimed] = conn
        conn.peer_name = claimed
        return b"\x01" + self.peer_list().encode()

    def on_disconnect(self, conn):
        # By remote address: any connection closing drops the peer named so.
        for name in [n for n, c in self.peers.items() if c is conn or c.remote == conn.remote or n == conn.remote]:
            self.peers.pop(name, None)

    async def dial(self, addr):
        host, port = addr.rsplit(":", 1)
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            return None
        conn = Conn(self, reader, writer, False)
        asyncio.create_task(conn.run())
        answer = await conn.request("p2p:hello", self.addr.encode())
        if answer and answer[:1] == b"\x01":
            self.peers[addr] = conn
        # A rejected connection is left open, as the workshop's nodes do.
        return conn

    async def serve(self, reader, writer):
        conn = Conn(self, reader, writer, True)
        await conn.run()

    # Gossip.
    def gossip(self, kind, msg_id, payload, exclude=None):
        for conn in list(self.peers.values()):
            if conn is not exclude and not conn.closed:
                conn.send("gossip:" + kind, msg_id + payload)

    def on_gossip_chat(self, conn, payload):
        msg_id, body = payload[:16], payload[16:]
        if msg_id in self.seen:
            return None
        self.seen.add(msg_id)
        sender, _, text = body.partition(b"\x00")
        out(f"CHAT {sender.decode(errors='replace')} {text.decode(errors='replace')}")
        self.gossip("chat", msg_id, body, exclude=conn)
        return None

    def say(self, text):
        msg_id = os.urandom(16)
        self.seen.add(msg_id)
        self.gossip("chat", msg_id, self.addr.encode() + b"\x00" + text.encode())

    # Search.
    def enable_search(self, kind):
        if f"gossip:search:{kind}" in self.handlers:
            return

        def on_search(conn, payload, kind=kind):
            gossip_id, search_id, query = payload[:16], payload[16:32], payload[32:]
            if gossip_id in self.seen or len(payload) < 32:
                return None
            self.seen.add(gossip_id)
            self.routes[search_id] = conn
            answer = self.held.get((kind, query))
            if kind == "block" and self.chain is not None and len(query) == 32:
                block = self.chain.blocks.get(query.hex())
                answer = block.serialize().encode() if block else None
            if answer is not None:
                conn.send(f"search_response:{kind}", search_id + answer)
            else:
                self.gossip(f"search:{kind}", gossip_id, search_id + query, exclude=conn)
            return None

        def on_response(conn, payload, kind=kind):
            search_id, answer = payload[:16], payload[16:]
            if search_id in self.searches and kind == "block" and self.chain is not None:
                self.searches.pop(search_id, None)
                self.take_block(answer.decode(errors="replace"), None, None)
                return None
            if search_id in self.searches:
                out(f"FOUND {kind} {answer.decode(errors='replace')}")
                self.searches.pop(search_id, None)
                return None
            back = self.routes.get(search_id)
            if back is not None and not back.closed:
                back.send(f"search_response:{kind}", payload)
            return None

        self.handlers[f"gossip:search:{kind}"] = on_search
        self.handlers[f"search_response:{kind}"] = on_response

    async def search(self, kind, query):
        self.enable_search(kind)
        gossip_id, search_id = os.urandom(16), os.urandom(16)
        self.seen.add(gossip_id)
        self.searches[search_id] = kind
        self.gossip(f"search:{kind}", gossip_id, search_id + query)
        await asyncio.sleep(10)
        if self.searches.pop(search_id, None) is not None:
            out(f"NOTFOUND {kind}")

    # Chain.
    def take_block(self, text, msg_id, conn):
        """Accepts a block; forwards it when new and valid; fetches parents."""
        result = self.chain.accept(text)
        if result in ("tip", "side"):
            if msg_id is not None:
                self.gossip("bc:new_block", msg_id, text.encode(), exclude=conn)
            # Orphans waiting for this block.
            import chain as c

            h = c.Block.parse(text).hash()
            for waiting in self.orphans.pop(h, []):
                self.take_block(waiting, None, None)
        elif isinstance(result, tuple):
            parent = result[1]
            waiting = self.orphans.setdefault(parent, [])
            if text not in waiting and len(self.orphans) < 64:
                waiting.append(text)
            gossip_id, search_id = os.urandom(16), os.urandom(16)
            self.seen.add(gossip_id)
            self.searches[search_id] = "block"
            self.gossip("search:block", gossip_id, search_id + bytes.fromhex(parent))
        return result

    def on_gossip_block(self, conn, payload):
        msg_id, body = payload[:16], payload[16:]
        if msg_id in self.seen:
            return None
        self.seen.add(msg_id)
        self.take_block(body.decode(errors="replace"), msg_id, conn)
        return None

    def on_gossip_tx(self, conn, payload):
        msg_id, body = payload[:16], payload[16:]
        if msg_id in self.seen:
            return None
        self.seen.add(msg_id)
        if self.chain.add_tx(body.decode(errors="replace")):
            self.gossip("bc:new_tx", msg_id, body, exclude=conn)
        return None

    def send_tx(self, recipient, amount):
        import chain as c

        tx = c.sign_tx(self.key, recipient, self.chain.next_nonce(self.pub), amount)
        text = tx.serialize()
        if self.chain.add_tx(text):
            msg_id = os.urandom(16)
            self.seen.add(msg_id)
            self.gossip("bc:new_tx", msg_id, text.encode())
        return hashlib.sha256(text.encode()).hexdigest()

    async def mine(self):
        while True:
            if not self.mining:
                await asyncio.sleep(0.2)
                continue
            block = self.chain.template(self.pub)
            tip = self.chain.tip
            want = "0" * self.chain.difficulty
            nonce = int.from_bytes(os.urandom(4), "big")
            found = False
            while self.mining and self.chain.tip == tip:
                for _ in range(2000):
                    block.nonce = nonce
                    nonce += 1
                    if block.hash().startswith(want):
                        found = True
                        break
                if found:
                    break
                await asyncio.sleep(0)
            if found and self.chain.tip == tip:
                text = block.serialize()
                if self.chain.accept(text) == "tip":
                    msg_id = os.urandom(16)
                    self.seen.add(msg_id)
                    self.gossip("bc:new_block", msg_id, text.encode())
                    out(f"MINED {block.number}")

    # Maintenance: get_peers every second, and the bootstrap connections.
    async def maintain(self):
        for addr in self.bootstrap:
            for _ in range(self.dup):
                await self.dial(addr)
        while True:
            await asyncio.sleep(1)
            for conn in list(self.peers.values()):
                if not conn.closed:
                    asyncio.create_task(conn.request("p2p:get_peers", b""))
            # Re-dial the bootstrap addresses that are not peers any more.
            for addr in self.bootstrap:
                if addr not in self.peers:
                    await self.dial(addr)

    async def commands(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return
            words = line.decode().strip().split(" ")
            if words[0] == "say":
                self.say(" ".join(words[1:]))
            elif words[0] == "search" and len(words) >= 3:
                asyncio.create_task(self.search(words[1], " ".join(words[2:]).encode()))
            elif words[0] == "hold" and len(words) >= 4:
                self.enable_search(words[1])
                self.held[(words[1], words[2].encode())] = " ".join(words[3:]).encode()
                out("HOLDING")
            elif words[0] == "peers":
                out("PEERS " + self.peer_list())
            elif self.chain is not None and words[0] == "key":
                out(f"KEY {self.pub}")
            elif self.chain is not None and words[0] == "send" and len(words) == 3:
                out(f"SENT {self.send_tx(words[1], int(words[2]))}")
            elif self.chain is not None and words[0] == "balance" and len(words) == 2:
                out(f"BALANCE {words[1]} {self.chain.state.get(words[1], [0, 0])[0]}")
            elif self.chain is not None and words[0] == "tip":
                out(f"TIP {self.chain.height()} {self.chain.tip}")
            elif self.chain is not None and words[0] == "mine" and len(words) == 2:
                self.mining = words[1] == "on"
                out(f"MINING {words[1]}")

    async def main(self):
        host, port = self.listen.rsplit(":", 1)
        server = await asyncio.start_server(self.serve, host, int(port))
        bound = server.sockets[0].getsockname()
        self.addr = f"{host}:{bound[1]}"
        out(f"LISTENING {self.addr}")
        asyncio.create_task(self.maintain())
        if self.chain is not None:
            asyncio.create_task(self.mine())
        await self.commands()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--dup", type=int, default=3, help="connections opened to each bootstrap address")
    p.add_argument("--max-peers", type=int, default=8)
    p.add_argument("--difficulty", type=int, help="run the workshop chain at this difficulty")
    p.add_argument("--mine", action="store_true", help="mine from the start (with --difficulty)")
    a = p.parse_args()
    node = Node(a.listen, a.peer, a.dup, a.max_peers, a.difficulty)
    node.mining = a.mine and a.difficulty is not None
    asyncio.run(node.main())


if __name__ == "__main__":
    main()
