"""Built-in corpus: a toy English-like language with long-distance agreement.

Sentences come from a small probabilistic grammar in the spirit of "The cake,
which contained candles, was eaten.": the main verb must agree in number with
the head noun of the subject, which may be separated from it by prepositional
phrases and (nested, possibly pronoun-less) relative clauses that contain
*attractor* nouns of the opposite number. Every sentence is one line of
lower-case tokens separated by single spaces and ends with the token ".".

The grammar, its probabilities and measured figures are documented in
``data/README.md``. Only the standard library is used, and all randomness
comes from ``random.Random(int)`` via ``random()``, so the output is the same
on every platform.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import random

from rnn_lm.data import SPLITS

SG, PL = 0, 1  # grammatical number; also the index into (singular, plural) pairs
INANIMATE, ANIMATE = 0, 1


def _pairs(words: str) -> tuple[tuple[str, str], ...]:
    """Parse 'cake/cakes dog/dogs' into (('cake', 'cakes'), ('dog', 'dogs'))."""
    return tuple(tuple(pair.split("/")) for pair in words.split())


def _by_number(pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Transpose (singular, plural) pairs into (singulars, plurals)."""
    return tuple(p[SG] for p in pairs), tuple(p[PL] for p in pairs)


# --- Lexicon -----------------------------------------------------------------
# Animacy only restricts which verbs a subject takes (dogs chase, boxes
# contain); it keeps the language a little less random without complicating
# agreement, which depends on number alone.
NOUNS = {  # NOUNS[animacy][number] -> words
    ANIMATE: _by_number(_pairs(
        "dog/dogs cat/cats child/children man/men woman/women teacher/teachers"
        " student/students doctor/doctors farmer/farmers bird/birds mouse/mice"
        " girl/girls")),
    INANIMATE: _by_number(_pairs(
        "cake/cakes key/keys cabinet/cabinets book/books table/tables box/boxes"
        " house/houses letter/letters picture/pictures door/doors apple/apples"
        " candle/candles")),
}
NAMES = ("mary", "john", "alice", "peter")  # singular, animate, no determiner
DETERMINERS = {SG: ("a", "this", "every"), PL: ("these", "those", "some", "many", "two")}
ADJECTIVES = ("big", "small", "old", "new", "red", "happy", "tall", "young",
              "green", "heavy")
PREPOSITIONS = ("to", "near", "of", "behind", "with", "on", "under", "from",
                "beside", "above")
RELATIVE_PRONOUNS = {ANIMATE: ("who", "that"), INANIMATE: ("which", "that")}
# Verbs indexed by the animacy of their subject; present tense is (sg, pl).
TRANSITIVE = {
    ANIMATE: _pairs("likes/like sees/see chases/chase finds/find wants/want"
                    " visits/visit helps/help watches/watch knows/know"
                    " carries/carry eats/eat"),
    INANIMATE: _pairs("contains/contain holds/hold covers/cover hides/hide"
                      " blocks/block"),
}
TRANSITIVE_PAST = {  # past tense carries no number, so it gives no cue
    ANIMATE: ("liked", "saw", "chased", "found", "visited", "helped", "carried",
              "ate"),
    INANIMATE: ("contained", "held", "covered", "hid"),
}
INTRANSITIVE = {
    ANIMATE: _pairs("runs/run sleeps/sleep sings/sing laughs/laugh smiles/smile"
                    " waits/wait"),
    INANIMATE: _pairs("falls/fall breaks/break moves/move shines/shine"),
}
PARTICIPLES = {  # passives, by the animacy of the (surface) subject
    ANIMATE: ("seen", "found", "helped", "watched", "visited", "called"),
    INANIMATE: ("eaten", "seen", "found", "taken", "moved", "painted", "sold",
                "washed", "opened", "broken"),
}
BE = ("is", "are")
WAS = ("was", "were")
HAVE = ("has", "have")

# --- Production probabilities (documented in data/README.md) -----------------
P_ANIMATE = 0.5      # every noun phrase draws number and animacy by fair coins
P_NAME = 0.2         # singular animate NP is a proper name
P_BARE = 0.15        # plural NP has no determiner ("dogs", "keys")
P_THE = 0.6          # determiner is "the" rather than a number-marked one
P_ADJ = 0.2          # one adjective before the noun
# How many modifiers (0, 1, 2) a noun phrase gets, as cumulative thresholds:
# the subject is modified often so that attractors are frequent, embedded noun
# phrases rarely so that sentences stay short.
SUBJECT_MODIFIERS = (0.35, 0.8)   # P(0)=.35, P(1)=.45, P(2)=.20
INNER_MODIFIERS = (0.75, 0.95)    # P(0)=.75, P(1)=.20, P(2)=.05
P_PP, P_SUBJ_REL = 0.4, 0.3       # modifier kind; object relative gets the rest
P_OMIT_REL = 0.2     # "the cake children like" instead of "the cake which ..."
P_OBJ_REL_PAST = 0.4  # object-relative verb in the (numberless) past tense
# Cumulative thresholds of the verb-phrase alternatives (see README).
REL_VP = (0.35, 0.6, 0.8)          # pres. transitive, past transitive, intransitive, was+participle
MAIN_VP = (0.3, 0.5, 0.7, 0.85)    # transitive, intransitive, be+adj, was+participle, have+object


@dataclasses.dataclass(frozen=True)
class Grammar:
    """One grammar of the family: a lexicon (indexed as the tables above) and the production
    probabilities; the generator, the agreement pairs and the statistics read everything from it."""

    nouns: dict
    names: tuple
    determiners: dict
    adjectives: tuple
    prepositions: tuple
    relative_pronouns: dict
    transitive: dict
    transitive_past: dict
    intransitive: dict
    participles: dict
    p_animate: float = P_ANIMATE
    p_name: float = P_NAME
    p_bare: float = P_BARE
    p_the: float = P_THE
    p_adj: float = P_ADJ
    subject_modifiers: tuple = SUBJECT_MODIFIERS
    inner_modifiers: tuple = INNER_MODIFIERS
    p_pp: float = P_PP
    p_subj_rel: float = P_SUBJ_REL
    p_omit_rel: float = P_OMIT_REL
    p_obj_rel_past: float = P_OBJ_REL_PAST
    rel_vp: tuple = REL_VP
    main_vp: tuple = MAIN_VP
    object_depth: int = 1  # how deep an object's modifiers nest (they do not separate subject and verb)

    @functools.cached_property
    def flip_number(self) -> dict:
        """Every number-marked verb form -> the form of the other number (how a pair's ungrammatical
        member is made)."""
        flip = {}
        for pair in (BE, WAS, HAVE, *(p for table in (self.transitive, self.intransitive)
                                      for pairs in table.values() for p in pairs)):
            flip[pair[SG]], flip[pair[PL]] = pair[PL], pair[SG]
        return flip

    @functools.cached_property
    def noun_number(self) -> dict:
        """The number of every noun (names included): what makes a noun an attractor."""
        number = {w: num for nouns in self.nouns.values() for num in (SG, PL) for w in nouns[num]}
        number.update((name, SG) for name in self.names)
        return number

    @functools.cached_property
    def vocabulary(self) -> tuple:
        return tuple(sorted(
            {"the", "."} | ({"an"} if "a" in self.determiners[SG] else set()) | set(self.noun_number)
            | set(self.flip_number) | set(self.adjectives) | set(self.prepositions) | {w for v in self.determiners.values() for w in v}
            | {w for table in (self.participles, self.relative_pronouns, self.transitive_past)
               for v in table.values() for w in v}))


# The first grammar: the tables above.
CAKES = Grammar(NOUNS, NAMES, DETERMINERS, ADJECTIVES, PREPOSITIONS, RELATIVE_PRONOUNS, TRANSITIVE,
                TRANSITIVE_PAST, INTRANSITIVE, PARTICIPLES)
# The second: another lexicon (no content word shared with the first), subjects modified more often
# and more deeply, relative clauses more frequent than prepositional phrases and more often without
# their pronoun, objects with deeper modifiers: a language the lecture's claims were not tuned on.
PILOTS = Grammar(
    nouns={
        ANIMATE: _by_number(_pairs(
            "pilot/pilots nurse/nurses baker/bakers painter/painters lawyer/lawyers singer/singers"
            " horse/horses goose/geese wolf/wolves ox/oxen friend/friends uncle/uncles")),
        INANIMATE: _by_number(_pairs(
            "engine/engines bottle/bottles window/windows bridge/bridges lamp/lamps coin/coins"
            " shelf/shelves knife/knives wheel/wheels ladder/ladders glass/glasses basket/baskets")),
    },
    names=("anna", "david", "sofia", "tom"),
    determiners={SG: ("one", "each", "another"), PL: ("several", "few", "three", "all", "both")},
    adjectives=("quiet", "bright", "strange", "famous", "clever", "dark", "wooden", "modern", "tiny",
                "ancient"),
    prepositions=("by", "inside", "across", "below", "around", "without", "among", "toward", "past",
                  "over"),
    relative_pronouns=RELATIVE_PRONOUNS,
    transitive={
        ANIMATE: _pairs("admires/admire follows/follow meets/meet trusts/trust calls/call draws/draw"
                        " fixes/fix builds/build pushes/push greets/greet"),
        INANIMATE: _pairs("supports/support touches/touch reflects/reflect crushes/crush joins/join"),
    },
    transitive_past={
        ANIMATE: ("admired", "followed", "met", "trusted", "drew", "fixed", "built", "pushed"),
        INANIMATE: ("supported", "touched", "reflected", "crushed"),
    },
    intransitive={
        ANIMATE: _pairs("dances/dance cries/cry works/work travels/travel swims/swim shouts/shout"),
        INANIMATE: _pairs("rolls/roll shakes/shake glows/glow rusts/rust"),
    },
    participles={
        ANIMATE: ("admired", "followed", "trusted", "greeted", "praised", "warned"),
        INANIMATE: ("fixed", "built", "pushed", "cleaned", "stolen", "lost", "polished", "hidden",
                    "dropped", "bent"),
    },
    subject_modifiers=(0.25, 0.7),   # P(0)=.25, P(1)=.45, P(2)=.30
    inner_modifiers=(0.6, 0.9),      # P(0)=.60, P(1)=.30, P(2)=.10
    p_pp=0.25, p_subj_rel=0.4,       # object relatives get .35
    p_omit_rel=0.35,
    p_obj_rel_past=0.3,
    main_vp=(0.35, 0.5, 0.65, 0.8),
    object_depth=2,
)
GRAMMARS = {"cakes": CAKES, "pilots": PILOTS}
# The first grammar's tables derived (what agreement_pairs and the tests read by default).
FLIP_NUMBER, NOUN_NUMBER, VOCABULARY = CAKES.flip_number, CAKES.noun_number, CAKES.vocabulary
DEFAULT_GRAMMAR = "cakes"


def get_grammar(grammar) -> Grammar:
    """A Grammar, or the name of one of ``GRAMMARS``."""
    if isinstance(grammar, Grammar):
        return grammar
    if grammar not in GRAMMARS:
        raise ValueError(f"no grammar {grammar!r}; the grammars are {', '.join(GRAMMARS)}")
    return GRAMMARS[grammar]


class _Generator:
    """Samples sentences of ``grammar``; methods append tokens to a shared list for speed."""

    def __init__(self, rng: random.Random, max_depth: int, grammar: Grammar = CAKES):
        self.rand = rng.random
        self.max_depth = max_depth
        self.g = grammar

    def pick(self, seq):
        # int(random() * n) rather than rng.choice(): same stream everywhere,
        # and noticeably faster in the inner loop.
        return seq[int(self.rand() * len(seq))]

    def coin(self, p: float = 0.5) -> int:
        return 1 if self.rand() < p else 0

    def sentence(self) -> tuple[list[str], int, int]:
        """Return (tokens, index of subject head noun, index of main verb)."""
        g = self.g
        out: list[str] = []
        num, anim = self.coin(), self.coin(g.p_animate)
        head = self.noun_phrase(out, num, anim, self.max_depth, g.subject_modifiers)
        verb = len(out)
        self.main_vp(out, num, anim)
        out.append(".")
        return out, head, verb

    def head_noun(self, out: list[str], num: int, anim: int) -> int:
        """Append determiner, adjective and noun; return the noun's index."""
        g = self.g
        rand = self.rand
        if num == SG and anim == ANIMATE and rand() < g.p_name:
            out.append(self.pick(g.names))
            return len(out) - 1
        det = len(out)
        if num == SG or rand() >= g.p_bare:
            out.append("the" if rand() < g.p_the else self.pick(g.determiners[num]))
        if rand() < g.p_adj:
            out.append(self.pick(g.adjectives))
        out.append(self.pick(g.nouns[anim][num]))
        if out[det] == "a" and out[det + 1][0] in "aeiou":  # "an apple", "an old dog"
            out[det] = "an"
        return len(out) - 1

    def noun_phrase(self, out, num, anim, depth, mod_probs=None) -> int:
        """Append a noun phrase whose modifiers nest at most `depth` deep."""
        head = self.head_noun(out, num, anim)
        mod_probs = mod_probs or self.g.inner_modifiers
        if depth > 0:
            x = self.rand()
            for _ in range((x >= mod_probs[0]) + (x >= mod_probs[1])):
                self.modifier(out, num, anim, depth)
        return head

    def any_noun_phrase(self, out, depth) -> None:
        self.noun_phrase(out, self.coin(), self.coin(self.g.p_animate), depth)

    def modifier(self, out, num, anim, depth) -> None:
        """Append one PP or relative clause modifying a (num, anim) noun."""
        g = self.g
        x = self.rand()
        if x < g.p_pp:
            out.append(self.pick(g.prepositions))
            self.any_noun_phrase(out, depth - 1)
        elif x < g.p_pp + g.p_subj_rel:
            out.append(self.pick(g.relative_pronouns[anim]))
            self.relative_vp(out, num, anim, depth - 1)
        else:  # object relative: its verb agrees with its own subject
            if self.rand() >= g.p_omit_rel:
                out.append(self.pick(g.relative_pronouns[anim]))
            num2, anim2 = self.coin(), self.coin(g.p_animate)
            self.noun_phrase(out, num2, anim2, depth - 1)
            if self.rand() < g.p_obj_rel_past:
                out.append(self.pick(g.transitive_past[anim2]))
            else:
                out.append(self.pick(g.transitive[anim2])[num2])

    def relative_vp(self, out, num, anim, depth) -> None:
        """Verb phrase of a subject relative clause ("that chased the cats")."""
        g = self.g
        x = self.rand()
        if x < g.rel_vp[0]:
            out.append(self.pick(g.transitive[anim])[num])
            self.any_noun_phrase(out, depth)
        elif x < g.rel_vp[1]:
            out.append(self.pick(g.transitive_past[anim]))
            self.any_noun_phrase(out, depth)
        elif x < g.rel_vp[2]:
            out.append(self.pick(g.intransitive[anim])[num])
        else:
            out += (WAS[num], self.pick(g.participles[anim]))

    def main_vp(self, out, num, anim) -> None:
        """Main verb phrase; its first token is the number-marked verb."""
        g = self.g
        # Objects' modifiers nest at most object_depth deep: they do not affect
        # the subject-verb distance and would only make sentences longer.
        obj_depth = min(g.object_depth, self.max_depth)
        x = self.rand()
        if x < g.main_vp[0]:
            out.append(self.pick(g.transitive[anim])[num])
            self.any_noun_phrase(out, obj_depth)
        elif x < g.main_vp[1]:
            out.append(self.pick(g.intransitive[anim])[num])
        elif x < g.main_vp[2]:
            out += (BE[num], self.pick(g.adjectives))
        elif x < g.main_vp[3]:
            out += (WAS[num], self.pick(g.participles[anim]))
        else:
            out.append(HAVE[num])
            self.any_noun_phrase(out, obj_depth)


def _check_args(num_tokens: int, max_depth: int) -> None:
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")


def generate_annotated(num_tokens: int, seed: int = 0, max_depth: int = 2, grammar=DEFAULT_GRAMMAR
                       ) -> list[tuple[list[str], int, int]]:
    """Like generate_sentences(), but each item is (tokens, head, verb).

    `head` is the index of the subject's head noun and `verb` that of the main
    verb, which agrees with it; ``verb - head - 1`` is the agreement distance.
    The sentences are exactly those of ``generate_sentences`` with the same
    arguments.
    """
    _check_args(num_tokens, max_depth)
    gen = _Generator(random.Random(seed), max_depth, get_grammar(grammar))
    result, count = [], 0
    while count < num_tokens:
        item = gen.sentence()
        result.append(item)
        count += len(item[0]) + 1  # +1 for the <eos> the toolkit appends
    return result


def generate_sentences(num_tokens: int, seed: int = 0, max_depth: int = 2, grammar=DEFAULT_GRAMMAR) -> list[str]:
    """Sample sentences until they hold at least `num_tokens` tokens.

    Each sentence counts one extra token for the end-of-line marker (<eos>)
    the toolkit appends. `max_depth` bounds how deeply modifiers of the
    subject nest (0: no modifiers, so the main verb follows the head noun),
    and hence the subject-verb distance; ``grammar``: one of ``GRAMMARS`` (or its name).
    """
    return [" ".join(toks) for toks, _, _ in generate_annotated(num_tokens, seed, max_depth, grammar)]


def derive_seed(seed: int, *labels) -> int:
    """A 64-bit seed for a named sub-stream; stable, unlike hash() of a str."""
    digest = hashlib.sha256(repr((seed, *labels)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def grammar_splits(seed: int = 0, train_tokens: int = 1_000_000, valid_tokens: int = 80_000,
                   test_tokens: int = 80_000, max_depth: int = 2, grammar=DEFAULT_GRAMMAR
                   ) -> dict[str, list[str]]:
    """Return {'train', 'valid', 'test'} sentence lists, each from its own seed (the first grammar's
    seeds as they were; another grammar's derived from its name too)."""
    sizes = dict(zip(SPLITS, (train_tokens, valid_tokens, test_tokens)))
    return {name: generate_sentences(size, split_seed(seed, name, grammar), max_depth, grammar)
            for name, size in sizes.items()}


def split_seed(seed: int, split: str, grammar=DEFAULT_GRAMMAR) -> int:
    """The seed of one split of ``grammar_splits``."""
    return derive_seed(seed, split, *(() if grammar == DEFAULT_GRAMMAR else (grammar,)))


def write_splits(out_dir: str, **kwargs) -> dict[str, str]:
    """Write train.txt/valid.txt/test.txt to `out_dir`; return their paths.

    Keyword arguments are passed to grammar_splits().
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, sentences in grammar_splits(**kwargs).items():
        paths[name] = os.path.join(out_dir, f"{name}.txt")
        # newline="\n" so that files are byte-identical on Windows too.
        with open(paths[name], "w", encoding="utf-8", newline="\n") as f:
            f.writelines(s + "\n" for s in sentences)
    return paths


MIN_ATTRACTOR_DISTANCE = 2  # shortest modifier holding a noun: "mary likes", "to keys"


def agreement_pairs(distance: int, num_pairs: int, seed: int = 0, grammar=DEFAULT_GRAMMAR
                    ) -> list[tuple[str, str]]:
    """(grammatical, ungrammatical) pairs that differ only in the main verb.

    Exactly `distance` tokens separate the subject's head noun from the main
    verb, and for distance > 0 at least one of them is an attractor: a noun of
    the opposite number. No grammatical modifier is one token long, so
    distance 1 raises ValueError, as do negative values.
    """
    if distance < 0 or 0 < distance < MIN_ATTRACTOR_DISTANCE:
        raise ValueError(f"no sentence has an attractor at distance {distance}")
    if num_pairs < 0:
        raise ValueError(f"num_pairs must be >= 0, got {num_pairs}")
    g = get_grammar(grammar)
    gen = _Generator(random.Random(derive_seed(seed, "agreement", distance)), 2, g)
    pairs = []
    while len(pairs) < num_pairs:
        num, anim = gen.coin(), gen.coin(g.p_animate)
        out: list[str] = []
        head = gen.head_noun(out, num, anim)
        # Rejection sampling: stack grammar-drawn modifiers, keep the sentence
        # only if they land exactly on `distance` and contain an attractor.
        # Modifiers are drawn as in the corpus, so the pairs stay in-domain.
        while len(out) - head - 1 < distance:
            gen.modifier(out, num, anim, depth=1 + gen.coin())
        between = out[head + 1:]
        if len(between) != distance or (
                distance and not any(g.noun_number.get(w, num) != num for w in between)):
            continue
        verb = len(out)
        gen.main_vp(out, num, anim)
        out.append(".")
        good = " ".join(out)
        out[verb] = g.flip_number[out[verb]]
        pairs.append((good, " ".join(out)))
    return pairs


def corpus_statistics(annotated: list[tuple[list[str], int, int]], grammar=DEFAULT_GRAMMAR) -> dict[str, float]:
    """Summary figures of generate_annotated() output (for data/README.md)."""
    noun_number = get_grammar(grammar).noun_number
    if not annotated:
        raise ValueError("no sentences to summarise")
    n = len(annotated)
    distances = [verb - head - 1 for _, head, verb in annotated]
    with_attractor = sum(
        any(noun_number.get(w) == 1 - noun_number[toks[head]] for w in toks[head + 1:verb])
        for toks, head, verb in annotated)
    return {
        "sentences": n,
        "tokens_with_eos": sum(len(t) + 1 for t, _, _ in annotated),
        "types": len({w for t, _, _ in annotated for w in t}),
        "mean_sentence_length": sum(len(t) for t, _, _ in annotated) / n,
        "mean_distance": sum(distances) / n,
        "max_distance": max(distances),
        "fraction_modified_subject": sum(d > 0 for d in distances) / n,
        "fraction_with_attractor": with_attractor / n,
    }
