/*
 * A stand-in bcryptprimitives.dll for running hyperclay.exe under Debian 12's Wine 8, which has
 * no ProcessPrng: Rust's std (1.78 and later) takes its random bytes from it and refuses to
 * start without it. The one export, over RtlGenRandom (SystemFunction036 in advapi32), which
 * Wine has. Built by scripts/cross-check.sh with mingw beside the .exe; never shipped: Windows 10
 * and later have the real one.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
