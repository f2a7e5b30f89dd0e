"""The workshop's chain (seed 001, "Blockchain Types" and "Block
Validation"), as a workshop node implements it, for toy's interop tests.

  transaction  sender,recipient,nonce,amount,signature
  block        number:nonce:parent_hash:coinbase:tx1:...:txN
  hash         SHA-256 of the block text; proof of work: DIFFICULTY leading
               zero hex digits; reward 10 000 after the transactions; at most
               10 transactions; fork choice: the highest number, first seen
               wins a tie
  signatures   ECDSA, NIST P-192, SHA-1 (PyPI `ecdsa` defaults),
               deterministic; keys compressed, signatures raw r||s, in hex
"""

import hashlib

import ecdsa

REWARD = 10_000
MAX_TXS = 10
GENESIS = "0:0:" + "0" * 64 + ":" + "0" * 66


def new_key():
    return ecdsa.SigningKey.generate(curve=ecdsa.NIST192p, hashfunc=hashlib.sha1)


def public_hex(sk):
    return sk.get_verifying_key().to_string("compressed").hex()


class Tx:
    def __init__(self, sender, recipient, nonce, amount, signature=""):
        self.sender, self.recipient = sender, recipient
        self.nonce, self.amount, self.signature = nonce, amount, signature

    def signing_text(self):
        return f"{self.sender},{self.recipient},{self.nonce},{self.amount}"

    def serialize(self):
        return f"{self.signing_text()},{self.signature}"

    @staticmethod
    def parse(text):
        sender, recipient, nonce, amount, signature = text.split(",")
        return Tx(sender, recipient, int(nonce), int(amount), signature)

    def verify(self):
        try:
            vk = ecdsa.VerifyingKey.from_string(bytes.fromhex(self.sender), curve=ecdsa.NIST192p, hashfunc=hashlib.sha1)
            return vk.verify(bytes.fromhex(self.signature), self.signing_text().encode())
        except Exception:
            return False


def sign_tx(sk, recipient, nonce, amount):
    tx = Tx(public_hex(sk), recipient, nonce, amount)
    tx.signature = sk.sign_deterministic(tx.signing_text().encode(), hashfunc=hashlib.sha1).hex()
    return tx


class Block:
    def __init__(self, number, nonce, parent, coinbase, txs):
        self.number, self.nonce, self.parent, self.coinbase, self.txs = number, nonce, parent, coinbase, txs

    def serialize(self):
        return ":".join([str(self.number), str(self.nonce), self.parent, self.coinbase] + [t.serialize() for t in self.txs])

    def hash(self):
        return hashlib.sha256(self.serialize().encode()).hexdigest()

    @staticmethod
    def parse(text):
        parts = text.split(":")
        number, nonce, parent, coinbase = int(parts[0]), int(parts[1]), parts[2], parts[3]
        return Block(number, nonce, parent, coinbase, [Tx.parse(t) for t in parts[4:]])


def apply_block(state, block):
    """Applies block to state (a dict key -> [balance, nonce]); False if invalid."""
    if len(block.txs) > MAX_TXS:
        return False
    for tx in block.txs:
        if not tx.verify():
            return False
        acc = state.setdefault(tx.sender, [0, 0])
        if acc[1] != tx.nonce or acc[0] < tx.amount or tx.amount < 0:
            return False
        acc[0] -= tx.amount
        acc[1] += 1
        state.setdefault(tx.recipient, [0, 0])[0] += tx.amount
    state.setdefault(block.coinbase, [0, 0])[0] += REWARD
    return True


class Chain:
    def __init__(self, difficulty):
        self.difficulty = difficulty
        genesis = Block.parse(GENESIS)
        self.genesis = genesis.hash()
        self.blocks = {self.genesis: genesis}
        self.tip = self.genesis
        self.state = {}
        self.mempool = {}  # tx id -> Tx

    def height(self):
        return self.blocks[self.tip].number

    def path(self, tip):
        out = []
        while tip != self.genesis:
            out.append(self.blocks[tip])
            tip = self.blocks[tip].parent
        return list(reversed(out))

    def state_at(self, tip):
        state = {}
        for b in self.path(tip):
            if not apply_block(state, b):
                return None
        return state

    def accept(self, text):
        """'tip', 'side', 'known', ('orphan', parent) or 'invalid'."""
        try:
            block = Block.parse(text)
        except Exception:
            return "invalid"
        h = block.hash()
        if h in self.blocks:
            return "known"
        if not h.startswith("0" * self.difficulty):
            return "invalid"
        parent = self.blocks.get(block.parent)
        if parent is None:
            return ("orphan", block.parent)
        if block.number != parent.number + 1:
            return "invalid"
        self.blocks[h] = block
        if block.number > self.height():
            state = self.state_at(h)
            if state is None:
                del self.blocks[h]
                return "invalid"
            self.tip, self.state = h, state
            self.prune()
            return "tip"
        return "side"

    def prune(self):
        for tid, tx in list(self.mempool.items()):
            if tx.nonce < self.state.get(tx.sender, [0, 0])[1]:
                del self.mempool[tid]

    def add_tx(self, text):
        try:
            tx = Tx.parse(text)
        except Exception:
            return False
        tid = hashlib.sha256(text.encode()).hexdigest()
        if tid in self.mempool or not tx.verify():
            return False
        if tx.nonce < self.state.get(tx.sender, [0, 0])[1]:
            return False
        self.mempool[tid] = tx
        return True

    def next_nonce(self, key):
        nonce = self.state.get(key, [0, 0])[1]
        used = {t.nonce for t in self.mempool.values() if t.sender == key}
        while nonce in used:
            nonce += 1
        return nonce

    def template(self, coinbase):
        state = {k: list(v) for k, v in self.state.items()}
        txs = []
        for tx in sorted(self.mempool.values(), key=lambda t: (t.sender, t.nonce)):
            if len(txs) >= MAX_TXS:
                break
            trial = {k: list(v) for k, v in state.items()}
            if apply_block(trial, Block(0, 0, "", coinbase, [tx])):
                trial[coinbase][0] -= REWARD
                state = trial
                txs.append(tx)
        return Block(self.height() + 1, 0, self.tip, coinbase, txs)
