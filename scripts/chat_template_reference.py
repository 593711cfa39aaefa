#!/usr/bin/env python3
"""Renders the real Jinja chat templates (as published in the models' tokenizer_config.json:
OpenHermes-2.5 ChatML, Llama-2-chat, zephyr-7b-beta, Meta-Llama-3-Instruct, Phi-3-small, Gemma)
with the `jinja2` package, as transformers renders them (trim_blocks, lstrip_blocks), for the
conversation of llama.cpp's tests/test-chat-template.cpp, leading BOS removed. The printed strings
are the expected values of Tests/QuillTests/ChatTemplateTests.swift.

    python3 -m venv /tmp/jinja && /tmp/jinja/bin/pip install jinja2
    /tmp/jinja/bin/python scripts/chat_template_reference.py
"""
import json, jinja2
T = {
 "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
 "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
 "zephyr": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
 "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
 "phi3": "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
 "gemma": "{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
}
conv = [("system","You are a helpful assistant"),("user","Hello"),("assistant","Hi there"),("user","Who are you"),("assistant","   I am an assistant   "),("user","Another question")]
env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)


def raise_exception(message):
    raise Exception(message)


for name, t in T.items():
    msgs = [dict(role=r, content=c) for r, c in conv]
    if name == "gemma":  # no system turn: llama.cpp folds it into the first user message
        msgs = msgs[1:]; msgs[0]["content"] = "You are a helpful assistant\n\nHello"
    bos = {"llama3": "<|begin_of_text|>"}.get(name, "<s>")
    out = env.from_string(t).render(messages=msgs, bos_token=bos, eos_token="</s>", add_generation_prompt=True, raise_exception=raise_exception)
    if out.startswith(bos): out = out[len(bos):]
    print(name, json.dumps(out))
