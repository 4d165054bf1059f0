"""Preference dataset types (rl:): the prompt/chosen/rejected (KTO: prompt/completion/label) texts of each type on
a small example, as axolotl's transforms produce them, and their token ids with the tiny tokenizer.

The texts were compared with axolotl's own transform functions (commit 067b021c) on these rows: identical for every
chatml.*, llama3.*, zephyr.nectar, user_defined (dpo and kto), chat_template.default and chat_template.argilla_chat.
Differences, on purpose: axolotl's current code has no `chatml.argilla` / `llama3.argilla` for dpo (its docs
describe them; its `default` reads the same fields, which is what hpcft does), and chat_template.default with a
plain-string answer and `roles:` that do not list `assistant` fails in axolotl (KeyError) and works here.
chat_template.argilla (orpo) is not compared: axolotl tokenizes it turn by turn in its own ORPO strategy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcft.launcher.schema import TrainConfig
from hpcft.trainer.preference_data import make_text_builder, tokenize_texts

PREFERENCE_JSONL = Path(__file__).resolve().parents[2] / "configs" / "examples" / "data" / "preference.jsonl"

CASES = [
    pytest.param('dpo', 'chatml.argilla', {},
                 {'system': 'You are a tiny assistant.',
                  'instruction': 'What color is the sky?',
                  'chosen_response': 'The sky is blue.',
                  'rejected_response': 'I do not know.'},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chatml.argilla'),
    pytest.param('dpo', 'chatml.argilla_chat', {},
                 {'chosen': [{'role': 'user', 'content': 'What color is the sky?'},
                             {'role': 'assistant', 'content': 'The sky is blue.'}],
                  'rejected': [{'role': 'user', 'content': 'What color is the sky?'},
                               {'role': 'assistant', 'content': 'I do not know.'}]},
                 {'prompt': '<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 287, 202, 279, 413, 267, 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chatml.argilla_chat'),
    pytest.param('dpo', 'chatml.icr', {},
                 {'system': 'You are a tiny assistant.',
                  'input': 'What color is the sky?',
                  'chosen': 'The sky is blue.',
                  'rejected': 'I do not know.'},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chatml.icr'),
    pytest.param('dpo', 'chatml.intel', {},
                 {'system': 'You are a tiny assistant.',
                  'question': 'What color is the sky?',
                  'chosen': 'The sky is blue.',
                  'rejected': 'I do not know.'},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chatml.intel'),
    pytest.param('dpo', 'chatml.prompt_pairs', {},
                 {'prompt': 'What color is the sky?', 'chosen': 'The sky is blue.', 'rejected': 'I do not know.'},
                 {'prompt': '<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 287, 202, 279, 413, 267, 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chatml.prompt_pairs'),
    pytest.param('dpo', 'chatml.ultra', {},
                 {'system': 'You are a tiny assistant.',
                  'prompt': 'What color is the sky?',
                  'chosen': [{'role': 'user', 'content': 'What color is the sky?'},
                             {'role': 'assistant', 'content': 'The sky is blue.'}],
                  'rejected': [{'role': 'user', 'content': 'What color is the sky?'},
                               {'role': 'assistant', 'content': 'I do not know.'}]},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chatml.ultra'),
    pytest.param('dpo', 'zephyr.nectar', {},
                 {'prompt': 'What color is the sky?',
                  'answers': [{'answer': 'I do not know.', 'rank': 1},
                              {'answer': 'The sky is blue.', 'rank': 2},
                              {'answer': 'x', 'rank': 0}]},
                 {'prompt': '<|system|>\n</s>\n<|user|>\nWhat color is the sky?</s>\n<|assistant|>\n',
                  'chosen': 'The sky is blue.',
                  'rejected': 'I do not know.'},
                 {'prompt_ids': [1, 31, 95, 513, 95, 33, 202, 31, 18, 86, 33, 202, 31, 95, 287, 95, 33, 202, 279,
                                 413, 267, 387, 485, 34, 31, 18, 86, 33, 202, 31, 95, 288, 95, 33, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-zephyr.nectar'),
    pytest.param('dpo', 'chat_template.default', {'field_messages': 'conversation',
                  'field_chosen': 'better',
                  'field_rejected': 'worse',
                  'message_property_mappings': {'role': 'from', 'content': 'value'},
                  'roles': {'system': ['system'], 'user': ['human'], 'assistant': ['gpt']}},
                 {'conversation': [{'from': 'system', 'value': 'You are a tiny assistant.'},
                                   {'from': 'human', 'value': 'What color is the sky?'}],
                  'better': {'from': 'gpt', 'value': 'The sky is blue.'},
                  'worse': 'I do not know.'},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chat_template.default'),
    pytest.param('dpo', 'chat_template.argilla_chat', {},
                 {'chosen': [{'role': 'user', 'content': 'What color is the sky?'},
                             {'role': 'assistant', 'content': 'The sky is blue.'}],
                  'rejected': [{'role': 'user', 'content': 'What color is the sky?'},
                               {'role': 'assistant', 'content': 'I do not know.'}]},
                 {'prompt': '<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 287, 202, 279, 413, 267, 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-chat_template.argilla_chat'),
    pytest.param('orpo', 'chat_template.argilla', {},
                 {'system': 'You are a tiny assistant.',
                  'chosen': [{'role': 'user', 'content': 'What color is the sky?'},
                             {'role': 'assistant', 'content': 'The sky is blue.'}],
                  'rejected': [{'role': 'user', 'content': 'What color is the sky?'},
                               {'role': 'assistant', 'content': 'I do not know.'}]},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'chosen': 'The sky is blue.<|im_end|>',
                  'rejected': 'I do not know.<|im_end|>'},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='orpo-chat_template.argilla'),
    pytest.param('kto', 'chatml.argilla', {},
                 {'system': 'You are a tiny assistant.',
                  'instruction': 'What color is the sky?',
                  'completion': 'The sky is blue.',
                  'label': True},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'completion': 'The sky is blue.<|im_end|>',
                  'label': True},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'completion_ids': [388, 485, 267, 582, 17, 2],
                  'label': True},
                 id='kto-chatml.argilla'),
    pytest.param('kto', 'chatml.argilla_chat', {},
                 {'completion': [{'role': 'user', 'content': 'What color is the sky?'},
                                 {'role': 'assistant', 'content': 'I do not know.'}],
                  'label': False},
                 {'prompt': '<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n',
                  'completion': 'I do not know.<|im_end|>',
                  'label': False},
                 {'prompt_ids': [1, 3, 287, 202, 279, 413, 267, 387, 485, 34, 2, 202, 3, 288, 202],
                  'completion_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2],
                  'label': False},
                 id='kto-chatml.argilla_chat'),
    pytest.param('kto', 'chatml.intel', {},
                 {'question': 'What color is the sky?', 'completion': 'The sky is blue.', 'label': True},
                 {'prompt': '<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n',
                  'completion': 'The sky is blue.<|im_end|>',
                  'label': True},
                 {'prompt_ids': [1, 3, 287, 202, 279, 413, 267, 387, 485, 34, 2, 202, 3, 288, 202],
                  'completion_ids': [388, 485, 267, 582, 17, 2],
                  'label': True},
                 id='kto-chatml.intel'),
    pytest.param('kto', 'chatml.prompt_pairs', {},
                 {'prompt': 'What color is the sky?', 'completion': 'I do not know.', 'label': False},
                 {'prompt': '<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n',
                  'completion': 'I do not know.<|im_end|>',
                  'label': False},
                 {'prompt_ids': [1, 3, 287, 202, 279, 413, 267, 387, 485, 34, 2, 202, 3, 288, 202],
                  'completion_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2],
                  'label': False},
                 id='kto-chatml.prompt_pairs'),
    pytest.param('kto', 'chatml.ultra', {},
                 {'system': 'You are a tiny assistant.',
                  'prompt': 'What color is the sky?',
                  'completion': 'The sky is blue.',
                  'label': True},
                 {'prompt': '<|im_start|>system\n'
                            'You are a tiny assistant.<|im_end|>\n'
                            '<|im_start|>user\n'
                            'What color is the sky?<|im_end|>\n'
                            '<|im_start|>assistant\n',
                  'completion': 'The sky is blue.<|im_end|>',
                  'label': True},
                 {'prompt_ids': [1, 3, 513, 202, 457, 300, 264, 596, 448, 17, 2, 202, 3, 287, 202, 279, 413, 267,
                                 387, 485, 34, 2, 202, 3, 288, 202],
                  'completion_ids': [388, 485, 267, 582, 17, 2],
                  'label': True},
                 id='kto-chatml.ultra'),
    pytest.param('dpo', 'llama3.argilla', {},
                 {'system': 'You are a tiny assistant.',
                  'instruction': 'What color is the sky?',
                  'chosen_response': 'The sky is blue.',
                  'rejected_response': 'I do not know.'},
                 {'prompt': '<|start_header_id|>system<|end_header_id|>\n'
                            '\n'
                            'You are a tiny assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'chosen': 'The sky is blue.<|eot_id|>',
                  'rejected': 'I do not know.<|eot_id|>'},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 513, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 457, 300, 264, 596, 448, 17,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 287, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202, 279, 413, 267, 387, 485, 34, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31,
                                 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 288, 31, 95, 364, 71,
                                 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                   33, 2]},
                 id='dpo-llama3.argilla'),
    pytest.param('dpo', 'llama3.argilla_chat', {},
                 {'chosen': [{'role': 'user', 'content': 'What color is the sky?'},
                             {'role': 'assistant', 'content': 'The sky is blue.'}],
                  'rejected': [{'role': 'user', 'content': 'What color is the sky?'},
                               {'role': 'assistant', 'content': 'I do not know.'}]},
                 {'prompt': '<|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'chosen': 'The sky is blue.<|eot_id|>',
                  'rejected': 'I do not know.<|eot_id|>'},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 287, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 279, 413, 267, 387, 485, 34,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 288, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                   33, 2]},
                 id='dpo-llama3.argilla_chat'),
    pytest.param('dpo', 'llama3.icr', {},
                 {'system': 'You are a tiny assistant.',
                  'input': 'What color is the sky?',
                  'chosen': 'The sky is blue.',
                  'rejected': 'I do not know.'},
                 {'prompt': '<|start_header_id|>system<|end_header_id|>\n'
                            '\n'
                            'You are a tiny assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'chosen': 'The sky is blue.<|eot_id|>',
                  'rejected': 'I do not know.<|eot_id|>'},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 513, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 457, 300, 264, 596, 448, 17,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 287, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202, 279, 413, 267, 387, 485, 34, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31,
                                 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 288, 31, 95, 364, 71,
                                 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                   33, 2]},
                 id='dpo-llama3.icr'),
    pytest.param('dpo', 'llama3.intel', {},
                 {'system': 'You are a tiny assistant.',
                  'question': 'What color is the sky?',
                  'chosen': 'The sky is blue.',
                  'rejected': 'I do not know.'},
                 {'prompt': '<|start_header_id|>system<|end_header_id|>\n'
                            '\n'
                            'You are a tiny assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'chosen': 'The sky is blue.<|eot_id|>',
                  'rejected': 'I do not know.<|eot_id|>'},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 513, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 457, 300, 264, 596, 448, 17,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 287, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202, 279, 413, 267, 387, 485, 34, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31,
                                 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 288, 31, 95, 364, 71,
                                 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                   33, 2]},
                 id='dpo-llama3.intel'),
    pytest.param('dpo', 'llama3.prompt_pairs', {},
                 {'prompt': 'What color is the sky?', 'chosen': 'The sky is blue.', 'rejected': 'I do not know.'},
                 {'prompt': '<|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'chosen': 'The sky is blue.<|eot_id|>',
                  'rejected': 'I do not know.<|eot_id|>'},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 287, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 279, 413, 267, 387, 485, 34,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 288, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                   33, 2]},
                 id='dpo-llama3.prompt_pairs'),
    pytest.param('dpo', 'llama3.ultra', {},
                 {'system': 'You are a tiny assistant.',
                  'prompt': 'What color is the sky?',
                  'chosen': [{'role': 'user', 'content': 'What color is the sky?'},
                             {'role': 'assistant', 'content': 'The sky is blue.'}],
                  'rejected': [{'role': 'user', 'content': 'What color is the sky?'},
                               {'role': 'assistant', 'content': 'I do not know.'}]},
                 {'prompt': '<|start_header_id|>system<|end_header_id|>\n'
                            '\n'
                            'You are a tiny assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'chosen': 'The sky is blue.<|eot_id|>',
                  'rejected': 'I do not know.<|eot_id|>'},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 513, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 457, 300, 264, 596, 448, 17,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 287, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202, 279, 413, 267, 387, 485, 34, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31,
                                 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 288, 31, 95, 364, 71,
                                 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202],
                  'chosen_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'rejected_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                   33, 2]},
                 id='dpo-llama3.ultra'),
    pytest.param('kto', 'llama3.argilla', {},
                 {'system': 'You are a tiny assistant.',
                  'instruction': 'What color is the sky?',
                  'completion': 'The sky is blue.',
                  'label': True},
                 {'prompt': '<|start_header_id|>system<|end_header_id|>\n'
                            '\n'
                            'You are a tiny assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'completion': 'The sky is blue.<|eot_id|>',
                  'label': True},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 513, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 457, 300, 264, 596, 448, 17,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 287, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202, 279, 413, 267, 387, 485, 34, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31,
                                 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 288, 31, 95, 364, 71,
                                 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202],
                  'completion_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'label': True},
                 id='kto-llama3.argilla'),
    pytest.param('kto', 'llama3.argilla_chat', {},
                 {'completion': [{'role': 'user', 'content': 'What color is the sky?'},
                                 {'role': 'assistant', 'content': 'I do not know.'}],
                  'label': False},
                 {'prompt': '<|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'completion': 'I do not know.<|eot_id|>',
                  'label': False},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 287, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 279, 413, 267, 387, 485, 34,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 288, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202],
                  'completion_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                     33, 2],
                  'label': False},
                 id='kto-llama3.argilla_chat'),
    pytest.param('kto', 'llama3.intel', {},
                 {'question': 'What color is the sky?', 'completion': 'The sky is blue.', 'label': True},
                 {'prompt': '<|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'completion': 'The sky is blue.<|eot_id|>',
                  'label': True},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 287, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 279, 413, 267, 387, 485, 34,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 288, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202],
                  'completion_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'label': True},
                 id='kto-llama3.intel'),
    pytest.param('kto', 'llama3.prompt_pairs', {},
                 {'prompt': 'What color is the sky?', 'completion': 'I do not know.', 'label': False},
                 {'prompt': '<|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'completion': 'I do not know.<|eot_id|>',
                  'label': False},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 287, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 279, 413, 267, 387, 485, 34,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 288, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202],
                  'completion_ids': [44, 412, 224, 81, 82, 87, 224, 78, 466, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95,
                                     33, 2],
                  'label': False},
                 id='kto-llama3.prompt_pairs'),
    pytest.param('kto', 'llama3.ultra', {},
                 {'system': 'You are a tiny assistant.',
                  'prompt': 'What color is the sky?',
                  'completion': 'The sky is blue.',
                  'label': True},
                 {'prompt': '<|start_header_id|>system<|end_header_id|>\n'
                            '\n'
                            'You are a tiny assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n'
                            '\n'
                            'What color is the sky?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
                            '\n',
                  'completion': 'The sky is blue.<|eot_id|>',
                  'label': True},
                 {'prompt_ids': [1, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 513, 31, 95, 364,
                                 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202, 457, 300, 264, 596, 448, 17,
                                 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31, 95, 442, 518, 87, 66, 75, 329, 71, 265,
                                 66, 76, 71, 95, 33, 287, 31, 95, 364, 71, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33,
                                 202, 202, 279, 413, 267, 387, 485, 34, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 31,
                                 95, 442, 518, 87, 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 288, 31, 95, 364, 71,
                                 66, 75, 329, 71, 265, 66, 76, 71, 95, 33, 202, 202],
                  'completion_ids': [388, 485, 267, 582, 17, 31, 95, 72, 82, 87, 66, 76, 71, 95, 33, 2],
                  'label': True},
                 id='kto-llama3.ultra'),
    pytest.param('dpo', {'field_prompt': 'q',
                  'prompt_format': '[{system}] {prompt} =>',
                  'chosen_format': ' {chosen}',
                  'rejected_format': ' {rejected}'}, {},
                 {'system': 'You are a tiny assistant.',
                  'q': 'What color is the sky?',
                  'chosen': 'The sky is blue.',
                  'rejected': 'I do not know.'},
                 {'prompt': '[You are a tiny assistant.] What color is the sky? =>',
                  'chosen': ' The sky is blue.',
                  'rejected': ' I do not know.'},
                 {'prompt_ids': [1, 62, 457, 300, 264, 596, 448, 17, 64, 224, 279, 413, 267, 387, 485, 34, 290, 33],
                  'chosen_ids': [305, 72, 485, 267, 582, 17, 2],
                  'rejected_ids': [299, 412, 224, 81, 82, 87, 224, 78, 466, 17, 2]},
                 id='dpo-user_defined'),
    pytest.param('kto', {'field_prompt': 'q',
                  'field_label': 'ok',
                  'prompt_format': '{prompt} =>',
                  'completion_format': ' {completion}'}, {},
                 {'q': 'What color is the sky?', 'completion': 'The sky is blue.', 'ok': False},
                 {'prompt': 'What color is the sky? =>', 'completion': ' The sky is blue.', 'label': False},
                 {'prompt_ids': [1, 279, 413, 267, 387, 485, 34, 290, 33],
                  'completion_ids': [305, 72, 485, 267, 582, 17, 2],
                  'label': False},
                 id='kto-user_defined'),
]


@pytest.mark.parametrize(("rl", "type_", "entry", "row", "texts", "ids"), CASES)
def test_texts_and_token_ids_per_type(tiny_tokenizer, rl, type_, entry, row, texts, ids):
    cfg = TrainConfig.model_validate({"base_model": "m", "rl": rl, "micro_batch_size": 2,
                                      "datasets": [{"path": "d.jsonl", "type": type_, **entry}]})
    got = make_text_builder(cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")(dict(row), "row 1")
    assert got == texts
    assert tokenize_texts(got, tiny_tokenizer) == ids


def test_the_trainer_builds_every_type_the_schema_admits():
    from hpcft.launcher.preference_fields import required_fields
    from hpcft.launcher.schema import PREFERENCE_TYPES, DatasetConfig
    from hpcft.trainer.preference_data import FAMILIES, make_text_builder

    for rl, types in PREFERENCE_TYPES.items():
        for type_name in types:
            ds = DatasetConfig(path="d.jsonl", type=type_name)
            assert required_fields(rl, ds)
            if not type_name.startswith("chat_template"):  # those need a tokenizer with a chat template
                assert make_text_builder(ds, _cfg(rl, type_name), None, "d")
    assert set(FAMILIES) == {t.split(".")[0] for types in PREFERENCE_TYPES.values() for t in types} - {
        "zephyr", "chat_template"}


def _cfg(rl: str, type_name: str):
    from hpcft.launcher.schema import TrainConfig

    return TrainConfig.model_validate({"base_model": "m", "rl": rl, "micro_batch_size": 2,
                                       "datasets": [{"path": "d.jsonl", "type": type_name}]})


def test_precomputed_reference_log_probs_are_keyed_on_the_reference_weights(tiny_model_dir, tiny_tokenizer, tmp_path):
    """TRL caches the reference log-probs next to the prepared data; hpcft's key must change with the reference
    (under ZeRO-3 TRL's own hash sees only empty partitions)."""
    import os
    import shutil

    from hpcft.trainer.prepare import cache_key

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    weights = other / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # re-saved weights

    def key(model: Path, precompute: bool) -> str:
        cfg = TrainConfig.model_validate({
            "base_model": str(model), "rl": "dpo", "precompute_ref_log_probs": precompute,
            "dataset_prepared_path": str(tmp_path / "prepared"),
            "datasets": [{"path": str(PREFERENCE_JSONL), "type": "chatml.intel"}]})
        return cache_key(cfg, tiny_tokenizer)

    assert key(tiny_model_dir, True) != key(other, True)
    assert key(tiny_model_dir, False) == key(other, False)  # without precompute the data alone decides
