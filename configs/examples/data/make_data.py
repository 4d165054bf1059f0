"""Regenerate the example data (chat.jsonl, pretrain.jsonl, preference.jsonl, kto.jsonl, reward.jsonl)
deterministically: python make_data.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hpcft.trainer.tiny import ANIMALS, COLORS, FRUITS, NUMBER_WORDS

SYSTEMS = ["You are a helpful assistant.", "You are a tiny assistant. Answer briefly."]


def qa_pair(rng: random.Random) -> tuple[str, str]:
    """One simple, learnable question and its fixed answer."""
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randrange(10), rng.randrange(10)
        x, y, z = NUMBER_WORDS[a], NUMBER_WORDS[b], NUMBER_WORDS[a + b]
        return f"What is {x} plus {y}?", f"{x} plus {y} is {z}."
    if kind == 1:
        thing = rng.choice(sorted(COLORS))
        return f"What color is the {thing}?", f"The {thing} is {COLORS[thing]}."
    if kind == 2:
        animal = rng.choice(sorted(ANIMALS))
        return f"What does the {animal} say?", f"The {animal} says {ANIMALS[animal]}."
    x, y = rng.sample(FRUITS, 2)
    return f"Repeat after me: {x} {y}.", f"{x} {y}."


def conversation(rng: random.Random) -> dict:
    turns = [{"from": "system", "value": rng.choice(SYSTEMS)}] if rng.random() < 0.4 else []
    for _ in range(rng.randint(1, 3)):
        question, answer = qa_pair(rng)
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return {"conversations": turns}


# Preference data the tiny model can learn: the chosen answer is the right one, the rejected one of a few evasions.
EVASIONS = ["I do not know.", "Thank you! Hello, how are you?", "I am fine."]


def preference_row(rng: random.Random) -> dict:
    """One chatml.intel preference row: system (sometimes), question, chosen, rejected."""
    question, answer = qa_pair(rng)
    row = {"system": rng.choice(SYSTEMS)} if rng.random() < 0.3 else {}
    return {**row, "question": question, "chosen": answer, "rejected": rng.choice(EVASIONS)}


def kto_row(rng: random.Random) -> dict:
    """One chatml.intel KTO row: the right answer is desirable (label true), an evasion undesirable."""
    question, answer = qa_pair(rng)
    good = rng.random() < 0.5
    return {"question": question, "completion": answer if good else rng.choice(EVASIONS), "label": good}


def main(out: Path = Path(__file__).parent, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(out / "chat.jsonl", "w") as f:
        for _ in range(200):
            f.write(json.dumps(conversation(rng)) + "\n")
    with open(out / "pretrain.jsonl", "w") as f:
        for _ in range(150):
            f.write(json.dumps({"text": " ".join(f"{q} {a}" for q, a in (qa_pair(rng) for _ in range(4)))}) + "\n")
    rng = random.Random(seed + 1)  # its own stream: the older files stay as they were
    with open(out / "preference.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps(preference_row(rng)) + "\n")
    with open(out / "kto.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps(kto_row(rng)) + "\n")
    # Reward-model pairs (bradley_terry.chat_template: system, input, chosen, rejected): the preference rows renamed.
    with open(out / "preference.jsonl") as source, open(out / "reward.jsonl", "w") as f:
        for line in source:
            row = json.loads(line)
            row["input"] = row.pop("question")
            ordered = {key: row[key] for key in ("system", "input", "chosen", "rejected") if key in row}
            f.write(json.dumps(ordered) + "\n")


if __name__ == "__main__":
    main()
