/*
 * tmk: petri_nb's tiny test kernel.
 *
 * A multiboot kernel that QEMU loads with -kernel on q35. It prints a ready
 * banner on COM1, draws on VGA text memory and runs one-line commands read
 * from COM1 or typed on the PS/2 keyboard, each of which makes the machine
 * halt in a known way, so the runtime's halt mapping can be tested for real.
 *
 * Commands: poweroff reset triplefault panic hibernate hang count
 *           draw N  echo TEXT  gfx  text
 *
 * It needs no firmware services, so it boots the same under SeaBIOS and under
 * qboot (which runs no VGA BIOS and leaves the chipset alone): it sets up 80x25
 * text mode with its own font and palette, and programs the ICH9 power
 * management base and ACPI enable, so poweroff, hibernate and the ACPI power
 * button (QMP system_powerdown: tmk powers off) work under either.
 *
 * The CPU idles in hlt between inputs (COM1, keyboard and SCI interrupts wake it),
 * so many tmk VMs can run side by side under TCG. In gfx mode (Bochs VBE
 * 1024x768x32, for measuring the live view on a big changing screen) the PIT
 * wakes it 60 times a second to draw the next animation frame.
 */
    .intel_syntax noprefix
    .code32

    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0
    .set COM1, 0x3F8
    .set VGA_TEXT, 0xB8000
    .set PM_BASE, 0x600         /* ICH9 ACPI PM I/O base, as SeaBIOS sets it */
    .set PM1_STS, PM_BASE       /* status: write 1 to clear */
    .set PM1_EN, PM_BASE + 2
    .set PM1_CNT, PM_BASE + 4
    .set PWRBTN, 0x100          /* power button bit in PM1_STS and PM1_EN */
    .set LPC_PMBASE, 0x8000F840 /* PCI config address of LPC 00:1f.0 register 0x40 */
    .set LPC_ACPI_CTRL, 0x8000F844
    .set ACPI_EN, 0x80          /* in ACPI_CTRL; SCI stays on IRQ 9 */
    .set SLP_S5, 0x2000         /* SLP_EN | SLP_TYP 0 */
    .set SLP_S4, 0x2800         /* SLP_EN | SLP_TYP 2 (ICH9 s4_val) */
    .set RESET_CTL, 0xCF9
    .set PVPANIC, 0x505
    .set LINE_MAX, 120
    .set KEYMAP_LEN, 0x3A       /* scancodes up to space */
    .set VBE_INDEX, 0x1CE       /* Bochs VBE (QEMU standard VGA) registers */
    .set VBE_DATA, 0x1CF
    .set PCI_ADDR, 0xCF8
    .set PCI_DATA, 0xCFC
    .set VGA_PCI_ID, 0x11111234 /* device 1111, vendor 1234 */
    .set VGA_LFB, 0xC0000000    /* where tmk puts the framebuffer BAR if no firmware did */
    .set GFX_W, 1024
    .set GFX_H, 768
    .set GFX_TOP, 128           /* first shown line: keeps VGA text and font memory intact */
    .set GFX_BG, 0x00203050
    .set BAR_W, 64
    .set PIT_DIVISOR, 19886     /* 1193182 Hz / 60 */
    .set PIC1_MASK, 0xE9        /* unmasked: IRQ1 keyboard, IRQ2 cascade, IRQ4 COM1 */
    .set PIC1_MASK_GFX, 0xE8    /* ... and IRQ0, the PIT */
    .set PIC2_MASK, 0xFD        /* unmasked: IRQ9, the ACPI SCI */
    .set VGA_PLANES, 0xA0000    /* VGA memory with the planes unchained (font loading) */
    .set LAPIC_SVR, 0xFEE000F0  /* local APIC: spurious vector, bit 8 enables */
    .set LAPIC_LINT0, 0xFEE00350
    .set LAPIC_LINT1, 0xFEE00360

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .text
    .globl _start
_start:
    cli
    lgdt [gdt_desc]
    push 0x08
    push offset 1f
    retf
1:  mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, offset stack_top

    call serial_init
    call pic_init
    call idt_init
    call kbd_init
    call acpi_init
    call vga_init
    call screen_banner
    mov esi, offset msg_ready
    call puts

main_loop:
    cli
    call poll_serial
    jnz 2f
    call poll_keyboard
    jnz 3f
    call poll_power_button
    cmp byte ptr [gfx_on], 0
    je 1f
    mov eax, [ticks]
    cmp eax, [drawn_tick]
    je 1f
    mov [drawn_tick], eax
    call gfx_frame
    jmp main_loop
1:  sti
    hlt
    jmp main_loop
2:  call line_char
    jmp main_loop
3:  push eax
    call putc                   /* echo typed keys on COM1 and screen */
    call screen_echo
    pop eax
    call line_char
    jmp main_loop

/* ---- devices ---------------------------------------------------------- */

serial_init:
    mov dx, COM1 + 1
    xor al, al
    out dx, al                  /* no interrupts while programming */
    mov dx, COM1 + 3
    mov al, 0x80
    out dx, al                  /* DLAB */
    mov dx, COM1
    mov al, 1
    out dx, al                  /* divisor 1: 115200 baud */
    mov dx, COM1 + 1
    xor al, al
    out dx, al
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al                  /* 8N1 */
    mov dx, COM1 + 2
    mov al, 0xC7
    out dx, al                  /* FIFO on, cleared */
    mov dx, COM1 + 4
    mov al, 0x0B
    out dx, al                  /* DTR RTS OUT2 (OUT2 gates the IRQ) */
    mov dx, COM1 + 1
    mov al, 0x01
    out dx, al                  /* interrupt on received data */
    ret

pic_init:
    /* Virtual wire mode, as a BIOS leaves it: PIC interrupts reach the CPU through
     * LINT0. Under qboot LINT0 stays masked and the PIC's interrupts are lost. */
    mov dword ptr [LAPIC_SVR], 0x1FF
    mov dword ptr [LAPIC_LINT0], 0x8700 /* ExtINT */
    mov dword ptr [LAPIC_LINT1], 0x8400 /* NMI */
    mov al, 0x11
    out 0x20, al
    out 0xA0, al
    mov al, 0x20
    out 0x21, al                /* master vectors 0x20-0x27 */
    mov al, 0x28
    out 0xA1, al                /* slave vectors 0x28-0x2f */
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xA1, al
    mov al, 1
    out 0x21, al
    out 0xA1, al
    mov al, PIC1_MASK
    out 0x21, al
    mov al, PIC2_MASK
    out 0xA1, al
    ret

acpi_init:                      /* what a BIOS does: PM I/O at PM_BASE, ACPI on, power button armed */
    mov dx, PCI_ADDR
    mov eax, LPC_PMBASE
    out dx, eax
    mov dx, PCI_DATA
    mov eax, PM_BASE | 1        /* bit 0: I/O space */
    out dx, eax
    mov dx, PCI_ADDR
    mov eax, LPC_ACPI_CTRL
    out dx, eax
    mov dx, PCI_DATA
    mov al, ACPI_EN
    out dx, al
    mov ax, PWRBTN
    mov dx, PM1_STS
    out dx, ax                  /* forget a press from before this boot */
    mov dx, PM1_EN
    out dx, ax                  /* a press raises the SCI, which wakes the hlt */
    ret

/* A power-button press (QMP system_powerdown) powers off, as an OS would. */
poll_power_button:
    mov dx, PM1_STS
    in ax, dx
    test ax, PWRBTN
    jz 1f
    out dx, ax                  /* acknowledge: drops the SCI */
    mov esi, offset msg_pwrbtn
    call puts
    jmp cmd_poweroff
1:  ret

kbd_wait_input_empty:
    in al, 0x64
    test al, 2
    jnz kbd_wait_input_empty
    ret

kbd_init:
    call kbd_wait_input_empty
    mov al, 0x60
    out 0x64, al                /* write controller configuration */
    call kbd_wait_input_empty
    mov al, 0x45                /* keyboard IRQ, system flag, set-1 translation */
    out 0x60, al
    ret

/* ZF clear and AL = byte when COM1 has received data. */
poll_serial:
    mov dx, COM1 + 5
    in al, dx
    test al, 1
    jz 1f
    mov dx, COM1
    in al, dx
    or dx, dx                   /* clear ZF */
1:  ret

/* ZF clear and AL = ASCII when a key was pressed; ignores releases and mouse. */
poll_keyboard:
    in al, 0x64
    test al, 1
    jz 9f
    mov ah, al
    in al, 0x60
    test ah, 0x20               /* byte from the aux (mouse) port */
    jnz 8f
    test al, 0x80               /* key release */
    jnz 8f
    cmp al, KEYMAP_LEN
    jae 8f
    movzx eax, al
    mov al, [keymap + eax]
    test al, al
    ret
8:  xor eax, eax                /* set ZF: nothing to report */
9:  ret

putc:                           /* AL -> COM1 */
    push edx
    push eax
    mov dx, COM1 + 5
1:  in al, dx
    test al, 0x20
    jz 1b
    pop eax
    mov dx, COM1
    out dx, al
    pop edx
    ret

puts:                           /* ESI -> COM1, NUL-terminated */
    push eax
1:  lodsb
    test al, al
    jz 2f
    call putc
    jmp 1b
2:  pop eax
    ret

put_dec:                        /* EAX as unsigned decimal -> COM1 */
    push ebx
    push ecx
    push edx
    mov ebx, 10
    xor ecx, ecx
1:  xor edx, edx
    div ebx
    push edx
    inc ecx
    test eax, eax
    jnz 1b
2:  pop eax
    add al, '0'
    call putc
    loop 2b
    pop edx
    pop ecx
    pop ebx
    ret

/* ---- screen ----------------------------------------------------------- */

screen_banner:                  /* white on blue "tmk ready" on row 0 */
    mov dx, 0x3D4
    mov al, 0x0A
    out dx, al
    inc dx
    mov al, 0x20
    out dx, al                  /* hide the hardware cursor */
    mov edi, VGA_TEXT
    mov ecx, 80 * 25
    mov ax, 0x0720
    rep stosw
    mov esi, offset msg_banner
    mov edi, VGA_TEXT
    mov ah, 0x1F
1:  lodsb
    test al, al
    jz 2f
    stosw
    jmp 1b
2:  ret

screen_echo:                    /* AL -> bottom row, newline clears it */
    cmp al, '\n'
    je 1f
    mov edx, [echo_col]
    cmp edx, 80
    jae 2f
    mov ah, 0x0E
    mov [VGA_TEXT + 24 * 160 + edx * 2], ax
    inc dword ptr [echo_col]
2:  ret
1:  mov edi, VGA_TEXT + 24 * 160
    mov ecx, 80
    mov ax, 0x0720
    rep stosw
    mov dword ptr [echo_col], 0
    ret

/* draw N: row r filled with full blocks of colour (N + r) mod 16. */
draw:
    mov edi, VGA_TEXT
    xor edx, edx                /* row */
1:  mov eax, ebx
    add eax, edx
    and eax, 15
    mov ah, al
    mov al, 0xDB
    mov ecx, 80
    rep stosw
    inc edx
    cmp edx, 25
    jb 1b
    ret

/* ---- graphics (Bochs VBE) --------------------------------------------- */

vbe_write:                      /* register AX <- BX */
    mov dx, VBE_INDEX
    out dx, ax
    mov dx, VBE_DATA
    mov ax, bx
    out dx, ax
    ret

pci_read:                       /* EAX = dword at config address EAX */
    mov dx, PCI_ADDR
    out dx, eax
    mov dx, PCI_DATA
    in eax, dx
    ret

find_lfb:                       /* EAX = BAR 0 of the standard VGA on bus 0, or 0 */
    xor ecx, ecx
1:  mov eax, ecx
    shl eax, 11
    or eax, 0x80000000
    call pci_read
    cmp eax, VGA_PCI_ID
    je 2f
    inc ecx
    cmp ecx, 32
    jb 1b
    xor eax, eax
    ret
2:  push ebx
    mov ebx, ecx
    shl ebx, 11
    or ebx, 0x80000004          /* its command register */
    mov eax, ebx
    call pci_read
    or al, 2                    /* memory decoding on */
    call pci_write_ebx
    add ebx, 0x0C               /* BAR 0 */
    mov eax, ebx
    call pci_read
    and eax, 0xFFFFFFF0
    jnz 3f
    mov eax, VGA_LFB            /* no firmware placed it (qboot): tmk does */
    call pci_write_ebx
3:  pop ebx
    ret

pci_write_ebx:                  /* dword EAX to config address EBX */
    push eax
    mov eax, ebx
    mov dx, PCI_ADDR
    out dx, eax
    pop eax
    mov dx, PCI_DATA
    out dx, eax
    ret

cmd_gfx:
    call find_lfb
    test eax, eax
    jz 9f
    add eax, GFX_TOP * GFX_W * 4
    mov [gfx_fb], eax
    mov ax, 4
    xor bx, bx
    call vbe_write              /* disable while changing the mode */
    mov ax, 1
    mov bx, GFX_W
    call vbe_write
    mov ax, 2
    mov bx, GFX_H
    call vbe_write
    mov ax, 3
    mov bx, 32
    call vbe_write
    mov ax, 4
    mov bx, 0xC1                /* enabled, linear framebuffer, keep memory */
    call vbe_write
    mov ax, 9
    mov bx, GFX_TOP
    call vbe_write              /* Y offset */
    mov edi, [gfx_fb]
    mov ecx, GFX_W * GFX_H
    mov eax, GFX_BG
    rep stosd
    mov dword ptr [frame], 0
    mov dword ptr [bar_x], 0
    mov al, 0x34
    out 0x43, al                /* PIT channel 0, rate generator */
    mov al, PIT_DIVISOR & 0xFF
    out 0x40, al
    mov al, PIT_DIVISOR >> 8
    out 0x40, al
    mov al, PIC1_MASK_GFX
    out 0x21, al
    mov byte ptr [gfx_on], 1
    mov esi, offset msg_gfx
    jmp puts
9:  mov esi, offset msg_novga
    jmp puts

cmd_text:
    mov al, PIC1_MASK
    out 0x21, al
    mov byte ptr [gfx_on], 0
    mov ax, 4
    xor bx, bx
    call vbe_write
    call vga_mode3              /* VBE left the VGA registers in graphics mode */
    call screen_banner
    mov esi, offset msg_text
    jmp puts

indexed_regs:                   /* EBX registers from ESI through the index/data pair at DX, DX+1 */
    xor ecx, ecx
1:  mov al, cl
    out dx, al
    inc dx
    lodsb
    out dx, al
    dec dx
    inc ecx
    cmp ecx, ebx
    jb 1b
    ret

vga_mode3:                      /* program the standard 80x25 text mode registers */
    mov esi, offset mode3_regs
    mov dx, 0x3C2
    lodsb
    out dx, al                  /* miscellaneous output */
    mov dx, 0x3C4
    mov ebx, 5
    call indexed_regs           /* sequencer */
    mov dx, 0x3D4
    mov al, 0x11
    out dx, al
    inc dx
    in al, dx
    and al, 0x7F
    out dx, al                  /* unlock CRTC registers 0-7 */
    mov dx, 0x3D4
    mov ebx, 25
    call indexed_regs           /* CRTC */
    mov dx, 0x3CE
    mov ebx, 9
    call indexed_regs           /* graphics controller */
    xor ecx, ecx
4:  mov dx, 0x3DA
    in al, dx                   /* reset the attribute flip-flop */
    mov dx, 0x3C0
    mov al, cl
    out dx, al
    lodsb
    out dx, al
    inc ecx
    cmp ecx, 21
    jb 4b
    mov dx, 0x3DA
    in al, dx
    mov dx, 0x3C0
    mov al, 0x20
    out dx, al                  /* palette done: video on */
    ret

vga_init:                       /* text mode without a VGA BIOS: registers, font, palette */
    call vga_mode3              /* also sets the write mask and bit mask the font copy needs */
    mov dx, 0x3C4
    mov ax, 0x0402
    out dx, ax                  /* sequencer map mask: plane 2 only */
    mov ax, 0x0704
    out dx, ax                  /* memory mode: planes unchained, no odd/even */
    mov dx, 0x3CE
    mov ax, 0x0005
    out dx, ax                  /* graphics mode: write mode 0, no odd/even */
    mov ax, 0x0406
    out dx, ax                  /* memory at 0xA0000, 64 KiB */
    mov esi, offset font
    mov edi, VGA_PLANES
    mov edx, 256
1:  mov ecx, 4
    rep movsd                   /* one 16-line glyph... */
    add edi, 16                 /* ...in a 32-line slot */
    dec edx
    jnz 1b
    call vga_mode3              /* back to text-mode memory mapping */
    mov dx, 0x3C8
    xor al, al
    out dx, al                  /* DAC: from entry 0, auto-increment */
    inc dx
    xor ecx, ecx
2:  mov bl, 4                   /* red: bits 2 and 5 of the entry */
    call dac_level
    mov bl, 2                   /* green: bits 1 and 4 */
    call dac_level
    mov bl, 1                   /* blue: bits 0 and 3 */
    call dac_level
    inc ecx
    cmp ecx, 64
    jb 2b
    ret

dac_level:                      /* the EGA palette: 0x2A if CL has bit BL, plus 0x15 if bit BL << 3 */
    xor al, al
    test cl, bl
    jz 1f
    add al, 0x2A
1:  shl bl, 3
    test cl, bl
    jz 2f
    add al, 0x15
2:  out dx, al
    ret

/* One animation frame: a bar sweeping right and the frame number in binary. */
gfx_frame:
    inc dword ptr [frame]
    mov eax, GFX_BG
    mov ebx, [bar_x]
    call fill_bar
    mov eax, [frame]
    shl eax, 3
    xor edx, edx
    mov ecx, GFX_W - BAR_W
    div ecx
    mov [bar_x], edx
    mov ebx, edx
    mov eax, [frame]
    imul eax, eax, 0x00050301
    or eax, 0x00808080
    call fill_bar
    xor ebx, ebx                /* bit index, most significant first */
1:  mov eax, 0x00303030
    mov ecx, 31
    sub ecx, ebx
    mov edx, [frame]
    bt edx, ecx
    jnc 2f
    mov eax, 0x00FFFFFF
2:  call fill_square
    inc ebx
    cmp ebx, 32
    jb 1b
    ret

fill_bar:                       /* EAX colour, EBX x: a BAR_W wide full-height column */
    mov edi, [gfx_fb]
    lea edi, [edi + ebx * 4]
    mov esi, BAR_W
    mov edx, GFX_H
    jmp fill_rect

fill_square:                    /* EAX colour, EBX index: 16x16 at (16 + 24 * index, 16) */
    imul edi, ebx, 24 * 4
    add edi, [gfx_fb]
    add edi, (16 * GFX_W + 16) * 4
    mov esi, 16
    mov edx, 16

fill_rect:                      /* EAX colour, EDI top left, ESI width, EDX height (pixels) */
1:  mov ecx, esi
    push edi
    rep stosd
    pop edi
    add edi, GFX_W * 4
    dec edx
    jnz 1b
    ret

/* ---- command line ----------------------------------------------------- */

line_char:                      /* AL: one input character */
    cmp al, '\r'
    je 1f
    cmp al, '\n'
    je 1f
    cmp al, 8
    je 3f
    mov edx, [line_len]
    cmp edx, LINE_MAX
    jae 2f
    mov [line + edx], al
    inc dword ptr [line_len]
2:  ret
3:  cmp dword ptr [line_len], 0
    je 2b
    dec dword ptr [line_len]
    ret
1:  mov edx, [line_len]
    test edx, edx
    jz 2b
    mov byte ptr [line + edx], 0
    mov dword ptr [line_len], 0
    jmp run_command

/* ZF set when the line starts with the NUL-terminated word at EDI and the
 * word ends there (NUL or space); ESI then points past the separator. */
match_word:
    mov esi, offset line
1:  mov al, [edi]
    test al, al
    jz 2f
    cmp al, [esi]
    jne 3f
    inc esi
    inc edi
    jmp 1b
2:  mov al, [esi]
    test al, al
    jz 4f
    cmp al, ' '
    jne 3f
    inc esi
4:  xor eax, eax                /* ZF = 1 */
    ret
3:  or esp, esp                 /* ZF = 0 */
    ret

.macro command word, handler
    mov edi, offset \word
    call match_word
    jz \handler
.endm

run_command:
    command w_poweroff, cmd_poweroff
    command w_reset, cmd_reset
    command w_triplefault, cmd_triplefault
    command w_panic, cmd_panic
    command w_hibernate, cmd_hibernate
    command w_hang, cmd_hang
    command w_count, cmd_count
    command w_draw, cmd_draw
    command w_echo, cmd_echo
    command w_gfx, cmd_gfx
    command w_text, cmd_text
    mov esi, offset msg_unknown
    jmp puts

cmd_poweroff:
    mov esi, offset msg_poweroff
    call puts
    mov dx, PM1_CNT
    mov ax, SLP_S5
    out dx, ax
    jmp stop

cmd_hibernate:
    mov esi, offset msg_hibernate
    call puts
    mov dx, PM1_CNT
    mov ax, SLP_S4
    out dx, ax
    jmp stop

cmd_reset:
    mov esi, offset msg_reset
    call puts
    mov dx, RESET_CTL
    mov al, 0x06
    out dx, al
    jmp stop

cmd_triplefault:
    mov esi, offset msg_triplefault
    call puts
    lidt [null_idt]
    int3                        /* no IDT: #GP, #DF, then shutdown */
    jmp stop

cmd_panic:
    mov esi, offset msg_panic
    call puts
    mov dx, PVPANIC
    mov al, 1
    out dx, al
    jmp stop

cmd_hang:
    mov esi, offset msg_hang
    call puts
    jmp stop

cmd_count:
    inc dword ptr [counter]
    mov esi, offset msg_count
    call puts
    mov eax, [counter]
    call put_dec
    mov al, '\n'
    jmp putc

cmd_draw:                       /* parse decimal N at ESI */
    xor ebx, ebx
1:  movzx eax, byte ptr [esi]
    sub al, '0'
    cmp al, 9
    ja 2f
    imul ebx, ebx, 10
    add ebx, eax
    inc esi
    jmp 1b
2:  call draw
    mov esi, offset msg_drawn
    call puts
    mov eax, ebx
    call put_dec
    mov al, '\n'
    jmp putc

cmd_echo:
    call puts
    mov al, '\n'
    jmp putc

/* The halt request is asynchronous: the CPU runs on a little before the
 * machine stops, so park it here instead of returning to the command loop. */
stop:
    cli
    hlt
    jmp stop

/* ---- interrupts ------------------------------------------------------- */

idt_init:                       /* 48 gates: exceptions, then the 16 IRQs */
    xor ecx, ecx
1:  mov eax, offset exception
    cmp ecx, 0x20
    jb 2f
    mov eax, offset irq_master
    cmp ecx, 0x28
    jb 2f
    mov eax, offset irq_slave
2:  mov [idt + ecx * 8], ax
    mov word ptr [idt + ecx * 8 + 2], 0x08
    mov word ptr [idt + ecx * 8 + 4], 0x8E00
    shr eax, 16
    mov [idt + ecx * 8 + 6], ax
    inc ecx
    cmp ecx, 48
    jb 1b
    mov eax, offset irq_timer
    mov [idt + 0x20 * 8], ax
    shr eax, 16
    mov [idt + 0x20 * 8 + 6], ax
    lidt [idt_desc]
    ret

irq_slave:
    push eax
    mov al, 0x20
    out 0xA0, al
    out 0x20, al
    pop eax
    iret

irq_timer:                      /* IRQ0: count ticks for the gfx animation */
    inc dword ptr [ticks]
    /* fall through to the EOI */
irq_master:
    push eax
    mov al, 0x20
    out 0x20, al
    pop eax
    iret

exception:
    mov esi, offset msg_exception
    call puts
    jmp stop

/* ---- data ------------------------------------------------------------- */

    .section .rodata
    .align 8
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: flat data */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt
idt_desc:
    .word 48 * 8 - 1
    .long idt
null_idt:
    .word 0
    .long 0

/* VGA mode 3 (80x25 text): misc, sequencer, CRTC (0x11 unlocked), graphics, attribute. */
mode3_regs:
    .byte 0x67
    .byte 0x03, 0x00, 0x03, 0x00, 0x02
    .byte 0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00, 0x00, 0x50
    .byte 0x9C, 0x0E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF
    .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF
    .byte 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F
    .byte 0x0C, 0x00, 0x0F, 0x08, 0x00

/* The Linux console's default8x16 font, CP437 order (tools/tmk_font.py makes it). */
font:
    .incbin "font8x16.bin"

/* Scancode set 1 to ASCII, unshifted US layout. */
keymap:
    .byte 0, 0
    .ascii "1234567890-="
    .byte 8, 0
    .ascii "qwertyuiop[]"
    .byte '\n', 0
    .ascii "asdfghjkl;'`"
    .byte 0
    .ascii "\\zxcvbnm,./"
    .byte 0, '*', 0, ' '

msg_banner:      .asciz "tmk ready"
msg_ready:       .asciz "tmk: ready\n"
msg_unknown:     .asciz "tmk: unknown command\n"
msg_poweroff:    .asciz "tmk: poweroff\n"
msg_hibernate:   .asciz "tmk: hibernate\n"
msg_reset:       .asciz "tmk: reset\n"
msg_triplefault: .asciz "tmk: triplefault\n"
msg_panic:       .asciz "tmk: panic\n"
msg_hang:        .asciz "tmk: hang\n"
msg_count:       .asciz "count="
msg_drawn:       .asciz "drawn "
msg_exception:   .asciz "tmk: unexpected exception\n"
msg_gfx:         .asciz "tmk: gfx 1024x768\n"
msg_novga:       .asciz "tmk: no standard VGA\n"
msg_text:        .asciz "tmk: text\n"
msg_pwrbtn:      .asciz "tmk: power button\n"
w_poweroff:      .asciz "poweroff"
w_reset:         .asciz "reset"
w_triplefault:   .asciz "triplefault"
w_panic:         .asciz "panic"
w_hibernate:     .asciz "hibernate"
w_hang:          .asciz "hang"
w_count:         .asciz "count"
w_draw:          .asciz "draw"
w_echo:          .asciz "echo"
w_gfx:           .asciz "gfx"
w_text:          .asciz "text"

    .data
    .align 4
counter:  .long 0
line_len: .long 0
echo_col: .long 0
ticks:    .long 0
drawn_tick: .long 0
frame:    .long 0
bar_x:    .long 0
gfx_fb:   .long 0
gfx_on:   .byte 0

    .bss
    .align 16
idt:      .skip 48 * 8
line:     .skip LINE_MAX + 1
    .align 16
stack:    .skip 4096
stack_top:
