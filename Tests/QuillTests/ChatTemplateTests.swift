import Quill
import XCTest

/// The chat formatters against the real Jinja templates: each expected string is what `jinja2`
/// renders from the template text the model publishes (scripts/chat_template_reference.py), for
/// the conversation of llama.cpp's tests/test-chat-template.cpp (whose own expected strings agree
/// for ChatML, Llama 3, Phi-3 and Gemma). Gemma's template refuses a system turn: Quill folds it
/// into the first user message, as llama.cpp does, and the reference renders that input.
final class ChatTemplateTests: XCTestCase {
    private let conversation: [ChatMessage] = [
        ChatMessage(.system, "You are a helpful assistant"), ChatMessage(.user, "Hello"), ChatMessage(.assistant, "Hi there"),
        ChatMessage(.user, "Who are you"), ChatMessage(.assistant, "   I am an assistant   "), ChatMessage(.user, "Another question"),
    ]

    private let expected: [(ChatTemplate, String)] = [
        (.chatml, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"),
        (.llama2, "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"),
        (.zephyr, "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n<|user|>\nWho are you</s>\n<|assistant|>\n   I am an assistant   </s>\n<|user|>\nAnother question</s>\n<|assistant|>\n"),
        (.llama3, "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
        (.phi3, "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"),
        (.gemma, "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"),
    ]

    func testEachFormatterRendersWhatItsJinjaTemplateRenders() {
        XCTAssertEqual(Set(expected.map(\.0.rawValue)), Set(ChatTemplate.allCases.map(\.rawValue)))
        for (template, text) in expected {
            XCTAssertEqual(template.render(conversation), text, template.rawValue)
        }
    }

    /// Each template is recognised from its published Jinja text (abridged to the part that holds
    /// its markers); a template without known markers is not.
    func testTemplatesAreRecognisedByTheirMarkers() {
        let texts: [(String, ChatTemplate?)] = [
            ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}", .chatml),
            ("{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
             + "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
             + "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}", .llama2),
            // Mistral Instruct v0.2: [INST] without <<SYS>>, turns not spaced as Llama 2's.
            ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] "
             + "+ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}", nil),
            ("{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}", .llama3),
            ("{{ '<|user|>\\n' + message['content'] + eos_token }}\\n{% elif message['role'] == 'system' %}", .zephyr),
            ("{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}", .gemma),
            ("{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}", .phi3),
            ("{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}", nil),
        ]
        for (text, template) in texts { XCTAssertEqual(ChatTemplate.detect(text), template, text) }
    }
}
